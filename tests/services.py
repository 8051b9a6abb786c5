"""Which real servers the integration tiers can reach, and what to do when one is missing.

Tests that need a server ask for it through ``require_postgres()``,
``require_rabbitmq()`` or ``require_redis()``: when the server is
down they are skipped, loudly (see the summary at the end of the run), unless
``CLINIC_REQUIRE_SERVICES=1`` is set, as ``.ci/run`` does, which turns a missing
server into a failure.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

from benchmarks.servers import reachable as _reachable

POSTGRES_HOST = os.environ.get("CLINIC_TEST_POSTGRES_HOST", "127.0.0.1")
POSTGRES_PORT = int(os.environ.get("CLINIC_TEST_POSTGRES_PORT", "5432"))
POSTGRES_DB = os.environ.get("CLINIC_TEST_POSTGRES_DB", "test")
POSTGRES_USER = os.environ.get("CLINIC_TEST_POSTGRES_USER", "postgres")

RABBITMQ_HOST = os.environ.get("CLINIC_TEST_RABBITMQ_HOST", "127.0.0.1")
RABBITMQ_PORT = int(os.environ.get("CLINIC_TEST_RABBITMQ_PORT", "5672"))
RABBITMQ_USER = os.environ.get("CLINIC_TEST_RABBITMQ_USER", "guest")
RABBITMQ_PASSWORD = os.environ.get("CLINIC_TEST_RABBITMQ_PASSWORD", "guest")

REDIS_HOST = os.environ.get("CLINIC_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("CLINIC_TEST_REDIS_PORT", "6379"))
REDIS_DB = int(os.environ.get("CLINIC_TEST_REDIS_DB", "0"))

HOW_TO_START = {
    "postgres": "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start "
    "(or set CLINIC_TEST_POSTGRES_HOST/PORT/DB/USER)",
    "rabbitmq": "start it with: scripts/ensure-services.sh rabbitmq (or rabbitmq-server -detached; "
    "or set CLINIC_TEST_RABBITMQ_HOST/PORT/USER/PASSWORD)",
    "redis": "start it with: redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" "
    "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log (or set CLINIC_TEST_REDIS_HOST/PORT/DB)",
}


def services_required() -> bool:
    return os.environ.get("CLINIC_REQUIRE_SERVICES", "") not in ("", "0", "false", "no")


def require_postgres() -> None:
    """Skip (or, under CLINIC_REQUIRE_SERVICES=1, fail) when PostgreSQL is unreachable."""
    if not _reachable(POSTGRES_HOST, POSTGRES_PORT):
        _skip_or_fail(_postgres_message())


def require_rabbitmq() -> None:
    """Skip (or, under CLINIC_REQUIRE_SERVICES=1, fail) when RabbitMQ is unreachable."""
    if not _reachable(RABBITMQ_HOST, RABBITMQ_PORT):
        _skip_or_fail(_rabbitmq_message())


def require_redis() -> None:
    """Skip (or, under CLINIC_REQUIRE_SERVICES=1, fail) when Redis is unreachable."""
    if not _reachable(REDIS_HOST, REDIS_PORT):
        _skip_or_fail(_redis_message())


def redis_url() -> str:
    """The test Redis server's URL (tests isolate themselves by key prefix, never FLUSHALL)."""
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"


def _skip_or_fail(message: str) -> NoReturn:
    if services_required():
        pytest.fail(message + " (CLINIC_REQUIRE_SERVICES is set)")
    pytest.skip(message)


def _postgres_message() -> str:
    return f"PostgreSQL at {POSTGRES_HOST}:{POSTGRES_PORT} is unreachable; {HOW_TO_START['postgres']}"


def _rabbitmq_message() -> str:
    return f"RabbitMQ at {RABBITMQ_HOST}:{RABBITMQ_PORT} is unreachable; {HOW_TO_START['rabbitmq']}"


def _redis_message() -> str:
    return f"Redis at {REDIS_HOST}:{REDIS_PORT} is unreachable; {HOW_TO_START['redis']}"


def missing_services() -> dict[str, str]:
    """The servers the server tiers need that are not reachable now."""
    missing = {}
    if not _reachable(POSTGRES_HOST, POSTGRES_PORT):
        missing["postgres"] = _postgres_message()
    if not _reachable(RABBITMQ_HOST, RABBITMQ_PORT):
        missing["rabbitmq"] = _rabbitmq_message()
    if not _reachable(REDIS_HOST, REDIS_PORT):
        missing["redis"] = _redis_message()
    return missing


def require_binary(name: str) -> str:
    """The path of a program a tier needs (nginx); skip loudly, or fail under CLINIC_REQUIRE_SERVICES."""
    import shutil

    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path:
        return path
    _skip_or_fail(f"{name} is not installed; install it with: apt-get install -y {name}")


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NPM_BIN = os.path.join(REPO, "tools", "node_modules", ".bin")


def require_tool(name: str, how: str) -> str:
    """The path of a validator a test runs (hadolint, redocly, kubectl...): looked up beside this
    Python (the venv's bin), in tools/node_modules/.bin, then on PATH. Missing: skip loudly with
    ``how`` to install it, or fail under CLINIC_REQUIRE_SERVICES."""
    import shutil
    import sys

    search = os.pathsep.join([os.path.dirname(sys.executable), NPM_BIN, os.environ.get("PATH", "")])
    path = shutil.which(name, path=search)
    if path:
        return path
    _skip_or_fail(f"{name} is not installed; {how}")


def amqp_url(vhost: str = "/") -> str:
    """The test broker's URL (default vhost unless given)."""
    from urllib.parse import quote

    return f"amqp://{RABBITMQ_USER}:{RABBITMQ_PASSWORD}@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{quote(vhost, safe='')}"
