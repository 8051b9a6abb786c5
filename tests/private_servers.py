"""Fixtures of private PostgreSQL, Redis and RabbitMQ servers on free ports, for tests that stop a dependency.

The servers themselves are the product's (``interfaces/local_deployment/private_servers.py``, which
``clinic chaos`` uses too). The shared servers of ``tests/services.py`` serve other tests at the
same time: never stop them. A missing binary skips the test loudly (or fails it under
``CLINIC_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from infrastructure.tls import Pki, create_dev_pki
from interfaces.local_deployment.private_servers import (
    PrivatePostgres,
    PrivateRabbitMQ,
    PrivateRedis,
    listening,
    scratch,
)
from interfaces.local_deployment.servers import DeploymentError, free_port
from tests import services

__all__ = ["PrivatePostgres", "PrivateRabbitMQ", "PrivateRedis", "free_port", "listening", "scratch"]
T = TypeVar("T")


def missing(message: str) -> None:
    """Skip the test loudly, or fail it under ``CLINIC_REQUIRE_SERVICES=1``."""
    if services.services_required():
        pytest.fail(message + " (CLINIC_REQUIRE_SERVICES is set)")
    pytest.skip(message)


def installed(make: Callable[[], T]) -> T:
    """``make()``, or the test skipped loudly when the server's programs are not installed."""
    try:
        return make()
    except DeploymentError as error:
        missing(str(error))
        raise


def ours_and_foreign(root: Path, services: Sequence[str]) -> tuple[Pki, Pki]:
    """Certificates for ``services`` from the development CA, and from another CA (a foreign server or client)."""
    return create_dev_pki(root / "ours", services=services), create_dev_pki(root / "foreign", services=services)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A running PostgreSQL of this test's own (database ``postgres``, user ``postgres``, trust)."""
    with scratch("clinic-pg-") as root:
        server = installed(lambda: PrivatePostgres(root, free_port()))
        server.init()
        server.start()
        try:
            yield server
        finally:
            with contextlib.suppress(DeploymentError):
                server.stop()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A running Redis of this test's own."""
    with scratch("clinic-redis-") as root:
        server = installed(lambda: PrivateRedis(root, free_port()))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    """A running RabbitMQ node of this test's own (guest/guest, default vhost)."""
    with scratch("clinic-rabbitmq-") as root:
        server = installed(lambda: PrivateRabbitMQ(root, free_port()))
        server.start()
        try:
            yield server
        finally:
            server.stop()
