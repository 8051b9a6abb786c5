"""The distributed deployment for the e2e tests: the product's (interfaces/local_deployment) on the
test servers, skipped loudly (or failed, under CLINIC_REQUIRE_SERVICES=1) when one is missing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from interfaces.local_deployment import deployment
from interfaces.local_deployment.deployment import DEADLINE_SECONDS, LocalDeployment
from interfaces.local_deployment.servers import Servers, free_port
from tests import services
from tests.kit import eventually

Cluster = LocalDeployment
__all__ = ["DEADLINE_SECONDS", "Cluster", "deployed", "eventually", "free_port", "servers_for_tests"]


def servers_for_tests() -> Servers:
    """Where the tests find PostgreSQL, RabbitMQ and Redis (tests/services.py)."""
    return Servers(postgres_host=services.POSTGRES_HOST, postgres_port=services.POSTGRES_PORT,
                   postgres_db=services.POSTGRES_DB, postgres_user=services.POSTGRES_USER,
                   amqp_url=services.amqp_url(), redis_url=services.redis_url())


@contextmanager
def deployed(tmp: Path, env: dict[str, str] | None = None, tracing: bool = True, workers: int = 1) -> Iterator[Cluster]:
    """The whole deployment in its own schema, prefixes and ports; removed on exit.

    ``env`` overrides the services' settings; ``tracing=False`` exports no spans (no OTLP receiver);
    ``workers``: the workers of each follower context (partitioned queues above 1).
    """
    services.require_postgres()
    services.require_rabbitmq()
    services.require_binary("nginx")
    services.require_redis()
    with deployment.deployed(tmp, servers_for_tests(), env, tracing, workers) as running:
        yield running
