"""Outages degrade the service gracefully: stop a real dependency under traffic and see it, start it
again and see the service recover.

One ``clinic run scheduling --role all`` process (API and worker: it needs PostgreSQL, Redis
for its queries and RabbitMQ for its relay and consumer) runs on private servers of the
test's own (tests/private_servers.py), never the shared ones, while a client keeps opening
slots (writes to the event store) and listing them (reads from Redis). For each dependency in
turn: stop it → ``/health/ready`` reports exactly that check false, within a second (503, or 200
``degraded`` for Redis, which holds only derived state), while ``/health/live`` answers in
milliseconds → no request gets a 500; a write the store cannot take, or a read Redis cannot
answer, is a 503 with ``Retry-After`` → start it → the same process is ready again (it
reconnected by itself), and writes and reads succeed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.kit import eventually
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
    """A ``clinic run`` process, its probes (each timed) and a client's requests."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path, env: dict[str, str]) -> None:
        self.process = process
        self.port = port
        self.log = log
        self.env = env
        self.took: dict[str, list[float]] = {"/health/live": [], "/health/ready": []}

    def request(self, method: str, path: str, token: str | None = None, body: Any = None,
                timeout: float = 10) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Status, JSON body and headers (status 0: nothing answered)."""
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"{}"), _lower(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}"), _lower(error.headers)
        except OSError:
            return 0, {}, {}

    def probe(self, path: str) -> tuple[int, dict[str, Any]]:
        self.assert_running()
        started = time.perf_counter()
        status, body, _ = self.request("GET", path, timeout=3)
        self.took[path].append(time.perf_counter() - started)
        return status, body

    def failing_checks(self) -> set[str] | None:
        """The checks readiness reports false (empty when ready), with liveness asserted up at each look."""
        live, _ = self.probe("/health/live")
        assert live == 200, f"liveness must not follow a dependency:\n{self.tail()}"
        status, body = self.probe("/health/ready")
        if status == 0:
            return None
        failing = {name for name, passed in body["checks"].items() if not passed}
        expected = "ok" if not failing else "degraded" if failing == {"redis"} else "unavailable"
        assert body["status"] == expected and (status == 503) == (expected == "unavailable"), body
        return failing

    def assert_running(self) -> None:
        assert self.process.poll() is None, f"the service exited (it must recover by itself):\n{self.tail()}"

    def tail(self) -> str:
        return self.log.read_text()[-4000:]


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


class Client:
    """Opens a slot and lists the doctor's slots, again and again, in a thread, noting every answer."""

    def __init__(self, service: Service, token: str) -> None:
        self.service = service
        self.token = token
        self.doctor = str(uuid.uuid4())
        self.answers: list[tuple[str, int, dict[str, str], float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._minutes = 0

    def __enter__(self) -> Client:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    def since(self, mark: int, kind: str) -> list[tuple[int, dict[str, str]]]:
        return [(status, headers) for what, status, headers, _ in self.answers[mark:] if what == kind]

    def _run(self) -> None:
        while not self.stop.is_set():
            self._minutes += 30
            start = (datetime(2028, 1, 7, 9, tzinfo=UTC) + timedelta(minutes=self._minutes)).isoformat()
            self._note("write", "POST", f"/v1/doctors/{self.doctor}/slots",
                       {"slots": [{"start": start, "duration_minutes": 30}]})
            self._note("read", "GET", f"/v1/doctors/{self.doctor}/slots?date=2028-01-07")

    def _note(self, kind: str, method: str, path: str, body: Any = None) -> None:
        started = time.perf_counter()
        status, _, headers = self.service.request(method, path, self.token, body)
        self.answers.append((kind, status, headers, time.perf_counter() - started))


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
    running = Service(process, port, log, env)
    try:
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_each_outage_degrades_gracefully_and_the_same_process_recovers(
        service: Service, private_postgres: PrivatePostgres, private_redis: PrivateRedis,
        private_rabbitmq: PrivateRabbitMQ):
    # given a scheduling service (API + worker) ready on its own PostgreSQL, Redis and RabbitMQ
    eventually(lambda: service.probe("/health/live")[0] == 200, timeout=60, what="the service listening")
    eventually(lambda: service.failing_checks() == set(), timeout=60, what="the service ready")
    _, body = service.probe("/health/ready")
    assert set(body["checks"]) == {"postgres", "redis", "rabbitmq", "accepting"}
    with Client(service, admin_token(service.env)) as client:
        eventually(lambda: ("read", 200) in {(k, s) for k, s, _, _ in client.answers}, timeout=30,
                   what="the client's first listing")
        for name, server in (("postgres", private_postgres), ("redis", private_redis), ("rabbitmq", private_rabbitmq)):
            # when the dependency stops, then readiness says which one, and liveness stays up
            server.stop()
            mark = len(client.answers)
            eventually(lambda name=name: service.failing_checks() == {name}, timeout=OUTAGE_SECONDS,
                       what=f"readiness to report {name} down (last: {service.probe('/health/ready')})")
            during = len(client.answers)
            eventually(lambda during=during: len(client.answers) >= during + 4, timeout=OUTAGE_SECONDS,
                       what=f"requests answered during the {name} outage")
            refused = {"postgres": "write", "redis": "read"}.get(name)
            if refused:  # then what needs the stopped server is a 503 with Retry-After, and the rest is served
                assert {(s, h.get("retry-after")) for s, h in client.since(during, refused)} == {(503, "5")}
                assert {s for s, _ in client.since(during, {"write": "read", "read": "write"}[refused])} <= {
                    200, 201}
            # when it is back, then the same process is ready again (it reconnected by itself), and serves
            server.start()
            eventually(lambda: service.failing_checks() == set(), timeout=OUTAGE_SECONDS,
                       what=f"readiness to recover from the {name} outage (last: {service.probe('/health/ready')})")
            after = len(client.answers)
            eventually(lambda after=after: {201, 200} <= {s for _, s, _, _ in client.answers[after:]},
                       timeout=OUTAGE_SECONDS,
                       what=f"a write and a read served after the {name} outage")
            statuses = {s for _, s, _, _ in client.answers[mark:]}
            assert statuses <= {200, 201, 503}, f"{name} outage: {sorted(statuses)}\n{service.tail()}"
    service.assert_running()
    # and the probes answered in time throughout: liveness in milliseconds, readiness within a second
    live, ready = sorted(service.took["/health/live"]), sorted(service.took["/health/ready"])
    assert live[-2] < 0.1 and live[-1] < 1.0, live[-5:]
    assert ready[-1] < 1.0, ready[-5:]
    assert max(took for *_, took in client.answers) < 5.0  # a request waits at most ~2 s for the store


def admin_token(env: dict[str, str]) -> str:
    issued = subprocess.run([*CLINIC, "token", "--sub", "ops-1", "--role", "ADMIN"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert issued.returncode == 0, issued.stderr
    return issued.stdout.strip()
