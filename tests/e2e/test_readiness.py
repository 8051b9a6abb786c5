"""Readiness tells the truth: stop a real dependency and see it, start it again and see the service recover.

One ``clinic run scheduling --role all`` process (API and worker: it needs PostgreSQL, Redis
for its queries and RabbitMQ for its relay and consumer) runs on private servers of the
test's own (tests/private_servers.py), never the shared ones. For each dependency in turn:
stop it → ``/health/ready`` turns 503 with exactly that check false, while ``/health/live``
stays 200 → start it → readiness is 200 again, with the same process (it reconnected by itself).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.distributed.conftest import eventually
from tests.private_servers import (  # noqa: F401 - fixtures
    PrivatePostgres,
    PrivateRabbitMQ,
    PrivateRedis,
    free_port,
    private_postgres,
    private_rabbitmq,
    private_redis,
)

ROOT = Path(__file__).resolve().parents[2]
CLINIC = [sys.executable, "-m", "interfaces.cli.main"]
OUTAGE_SECONDS = 20
"""How long readiness may take to notice an outage, or a recovery (it is cached 1 s; reconnects back off)."""


class Service:
    """A ``clinic run`` process and its probes."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    def probe(self, path: str) -> tuple[int, dict[str, Any]]:
        self.assert_running()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=3) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())
        except OSError:
            return 0, {}

    def failing_checks(self) -> set[str] | None:
        """The checks readiness reports false (empty when ready), with liveness asserted up at each look."""
        live, _ = self.probe("/health/live")
        assert live == 200, f"liveness must not follow a dependency:\n{self.tail()}"
        status, body = self.probe("/health/ready")
        if status == 0:
            return None
        assert (status == 200) == all(body["checks"].values()) and body["status"] == ("ok" if status == 200 else
                                                                                      "unavailable"), body
        return {name for name, passed in body["checks"].items() if not passed}

    def assert_running(self) -> None:
        assert self.process.poll() is None, f"the service exited (it must recover by itself):\n{self.tail()}"

    def tail(self) -> str:
        return self.log.read_text()[-4000:]


@pytest.fixture
def service(tmp_path: Path, private_postgres: PrivatePostgres, private_redis: PrivateRedis,
            private_rabbitmq: PrivateRabbitMQ) -> Iterator[Service]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CLINIC_DATA_DIR": str(tmp_path / "data"),
           "CLINIC_PERSISTENCE": "postgres", **private_postgres.env, "POSTGRES_POOL_SIZE": "2",
           "CLINIC_REDIS_URL": private_redis.url, "CLINIC_AMQP_URL": private_rabbitmq.url,
           "CLINIC_RUNNER_TICK_SECONDS": "0.2"}
    migrate = subprocess.run([*CLINIC, "db", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    port, log = free_port(), tmp_path / "scheduling.log"
    with open(log, "ab") as output:
        process = subprocess.Popen([*CLINIC, "run", "scheduling", "--role", "all", "--port", str(port)],
                                   cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    running = Service(process, port, log)
    try:
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_readiness_follows_each_dependency_and_recovers_while_liveness_stays_up(
        service: Service, private_postgres: PrivatePostgres, private_redis: PrivateRedis,
        private_rabbitmq: PrivateRabbitMQ):
    # given a scheduling service (API + worker) ready on its own PostgreSQL, Redis and RabbitMQ
    eventually(lambda: service.probe("/health/live")[0] == 200, timeout=60, what="the service listening")
    eventually(lambda: service.failing_checks() == set(), timeout=60, what="the service ready")
    _, body = service.probe("/health/ready")
    assert set(body["checks"]) == {"postgres", "redis", "rabbitmq", "accepting"}
    for name, server in (("postgres", private_postgres), ("redis", private_redis), ("rabbitmq", private_rabbitmq)):
        # when the dependency stops, then readiness says which one, and liveness stays up
        server.stop()
        eventually(lambda name=name: service.failing_checks() == {name}, timeout=OUTAGE_SECONDS,
                   what=f"readiness to report {name} down (last: {service.probe('/health/ready')})")
        # when it is back, then the same process is ready again: it reconnected by itself
        server.start()
        eventually(lambda: service.failing_checks() == set(), timeout=OUTAGE_SECONDS,
                   what=f"readiness to recover from the {name} outage (last: {service.probe('/health/ready')})")
    service.assert_running()
