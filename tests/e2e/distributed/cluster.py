"""A whole distributed deployment, for the e2e tests and the end-to-end benchmark: four services, the
authorization server, nginx, PostgreSQL, RabbitMQ, Redis.

Each service is a separate OS process (``clinic run``); the run is isolated by its own
PostgreSQL schema, AMQP prefix, data directory (auth files, certificates) and ports, and
everything is removed afterwards. Security is as in production: people log in to
``clinic run auth`` (code flow + PKCE) for their tokens; every service finds the issuer's keys
by discovery; the booking service gets its own client-credentials token for the registry.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from application.bootstrap import SYSTEM
from infrastructure.messaging.topology import Topology
from infrastructure.security.scopes import PUBLIC_SCOPES
from tests import services
from tests.e2e.distributed.otlp import OtlpReceiver
from tests.e2e.oauth import user_token
from tests.polling import eventually

ROOT = Path(__file__).resolve().parents[3]
CLINIC = [sys.executable, "-m", "interfaces.cli.main"]
DEADLINE_SECONDS = 6
WEB_CLIENT = "e2e-web"
REDIRECT_URI = "http://127.0.0.1:9/callback"
"""Never visited: the test reads the code from the redirect's Location header, as an app's handler would."""
PASSWORD = "e2e password, long enough"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """The deployment under test and the handles a test needs to break it."""

    def __init__(self, tmp: Path, schema: str, env: dict[str, str] | None = None, tracing: bool = True) -> None:
        self.tmp = tmp
        self.prefix = f"e2e{uuid.uuid4().hex[:8]}"
        self.ports: dict[str, int] = {}
        """Each process's HTTP port (the API, or a worker's health probes), by process name."""
        self.roles: dict[str, tuple[str, str]] = {}
        self.internal_port = free_port()
        self.gateway_port = free_port()
        self.auth_port = free_port()
        self.users: set[tuple[str, str]] = set()
        self.otlp = OtlpReceiver().start() if tracing else None
        """Every span the services export (OTLP/HTTP), for tests/e2e/distributed/test_tracing.py."""
        self.env = {
            **os.environ,
            "CLINIC_DATA_DIR": str(tmp / "data"), "CLINIC_PERSISTENCE": "postgres",
            "POSTGRES_DBNAME": services.POSTGRES_DB, "POSTGRES_HOST": services.POSTGRES_HOST,
            "POSTGRES_PORT": str(services.POSTGRES_PORT), "POSTGRES_USER": services.POSTGRES_USER,
            "POSTGRES_PASSWORD": "", "POSTGRES_SCHEMA": schema,
            "POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "4",  # other tiers share the server's 100 connections
            "CLINIC_AMQP_URL": services.amqp_url(), "CLINIC_AMQP_PREFIX": self.prefix,
            "CLINIC_REGISTRY_URL": f"https://127.0.0.1:{self.internal_port}",
            "CLINIC_SAGA_DEADLINE_SECONDS": str(DEADLINE_SECONDS), "CLINIC_RUNNER_TICK_SECONDS": "0.2",
            "CLINIC_REGISTRY_BREAKER_RESET_SECONDS": "1",
            "CLINIC_REDIS_URL": services.redis_url(), "CLINIC_REDIS_PREFIX": f"{self.prefix}:views:",
            "CLINIC_JWT_ISSUER": self.issuer, "CLINIC_OAUTH_TOKEN_URL": f"{self.issuer}/oauth/token",
            "CLINIC_CLIENT_ID": "booking",
            # every test client signs in from 127.0.0.1: the per-IP limits would stop the suite
            "CLINIC_AUTH_LOGIN_RATE_LIMIT": "10000/minute", "CLINIC_AUTH_TOKEN_RATE_LIMIT": "10000/minute",
            **({"OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
               if self.otlp is not None else {}),
            **(env or {}),
        }
        self.processes: dict[str, subprocess.Popen] = {}
        self.gateway: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.auth_port}"

    def start_auth(self) -> None:
        """The authorization server, with the booking service's client and a public web client."""
        secret = self.clinic("auth", "client", "add", "booking", "--scope", "registry:eligibility")
        path = self.tmp / "booking-client-secret"  # as Kubernetes mounts a Secret
        path.write_text(secret + "\n")
        path.chmod(0o600)
        self.env["CLINIC_CLIENT_SECRET_FILE"] = str(path)
        self.clinic("auth", "client", "add", WEB_CLIENT, "--public", "--redirect-uri", REDIRECT_URI,
                    *[arg for scope in sorted(PUBLIC_SCOPES) for arg in ("--scope", scope)])
        self.ports["auth"] = self.auth_port
        self.start("auth")

    def clinic(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run([*CLINIC, *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                                timeout=60, input=stdin)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout.strip()

    def start(self, name: str, service: str | None = None, role: str = "all") -> None:
        """Start process ``name`` (default: the service of that name, API and worker in one)."""
        service, role = self.roles.setdefault(name, (service or name, role))
        port = self.ports.setdefault(name, free_port())
        log = open(self.tmp / f"{name}.log", "a")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            [*CLINIC, "run", service, "--role", role, "--port", str(port), "--internal-port", str(self.internal_port)],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        eventually(lambda: self.ready(name), timeout=60, what=f"{name} ready")

    def upstreams(self) -> dict[str, list[str]]:
        """Each service's API replicas, for the gateway."""
        replicas: dict[str, list[str]] = {}
        for name, (service, role) in self.roles.items():
            if role != "worker" and service != "auth":  # the issuer has its own address, not behind /v1
                replicas.setdefault(service, []).append(f"127.0.0.1:{self.ports[name]}")
        return replicas

    def stop(self, service: str, sig: int = signal.SIGTERM) -> int:
        process = self.processes.pop(service)
        process.send_signal(sig)
        return process.wait(timeout=30)

    def ready(self, service: str) -> bool:
        process = self.processes[service]
        if process.poll() is not None:
            raise AssertionError(f"{service} exited: {(self.tmp / f'{service}.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[service]}/health/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def start_gateway(self) -> None:
        """nginx with the config ``clinic gateway`` writes (as an operator would run it)."""
        runtime, config = self.tmp / "gateway", self.tmp / "gateway" / "nginx.conf"
        replicas = self.upstreams()
        self.clinic("gateway", "--listen", f"127.0.0.1:{self.gateway_port}", "--runtime-dir", str(runtime),
                    "--output", str(config), "--spec", str(ROOT / "specs" / "openapi.json"),
                    *[arg for service, addresses in replicas.items() for arg in (f"--{service}", ",".join(addresses))])
        nginx = services.require_binary("nginx")
        self.gateway = subprocess.Popen([nginx, "-e", str(runtime / "error.log"), "-p", str(runtime),
                                         "-c", str(config)])
        eventually(lambda: self.call("GET", "/health/live")[0] == 200, what="gateway live")

    def token(self, sub: str, role: str) -> str:
        """Sign in as ``sub`` (registered on first use) with the code flow, as a person's app would."""
        if (sub, role) not in self.users:
            self.clinic("auth", "user", "add", f"{sub}-{role.lower()}", "--sub", sub, "--role", role,
                        "--password-stdin", stdin=PASSWORD + "\n")
            self.users.add((sub, role))
        return user_token(self.issuer, WEB_CLIENT, REDIRECT_URI, f"{sub}-{role.lower()}", PASSWORD,
                          " ".join(sorted(PUBLIC_SCOPES)))

    def call(self, method: str, path: str, token: str | None = None, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {}),
                   **(headers or {})}
        request = urllib.request.Request(self.base + path, method=method, headers=headers,
                                         data=json.dumps(body).encode() if body is not None else None)
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")
        except OSError:
            return 0, None

    def shut_down(self) -> None:
        for service in list(self.processes):
            self.stop(service)
        if self.gateway is not None:
            self.gateway.terminate()
            self.gateway.wait(timeout=10)
        asyncio.run(_delete_broker_objects(self.prefix))
        _delete_redis_keys(f"{self.prefix}:views:")
        if self.otlp is not None:
            self.otlp.stop()


async def _delete_broker_objects(prefix: str) -> None:
    import aiormq

    topology = Topology(prefix=prefix)
    connection = await aiormq.connect(services.amqp_url())
    channel = await connection.channel()
    for follower in {follower for _, follower in SYSTEM.edges}:
        queues = topology.queues(follower)
        for queue in (queues.main, *queues.retries, queues.dead_letters):
            await channel.queue_delete(queue)
    await channel.exchange_delete(topology.exchange)
    await connection.close()


def _delete_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(services.redis_url())
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.unlink(*keys)
    client.close()


@contextmanager
def deployed(tmp: Path, env: dict[str, str] | None = None, tracing: bool = True) -> Iterator[Cluster]:
    """The whole deployment in its own schema, prefixes and ports; removed on exit.

    ``env`` overrides the services' settings (the benchmark's pool sizes, deadline, log level);
    ``tracing=False`` exports no spans (no OTLP receiver).
    """
    services.require_postgres()
    services.require_rabbitmq()
    services.require_binary("nginx")
    services.require_redis()
    import psycopg

    schema = f"clinic_e2e_{uuid.uuid4().hex[:10]}"
    dsn = (f"host={services.POSTGRES_HOST} port={services.POSTGRES_PORT} dbname={services.POSTGRES_DB} "
           f"user={services.POSTGRES_USER}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    deployment = Cluster(tmp, schema, env, tracing)
    try:
        deployment.clinic("db", "migrate")
        deployment.clinic("certs", "init")
        deployment.start_auth()
        deployment.start("registry")
        deployment.start("scheduling")
        # API replicas scale apart from the worker: two consultations APIs, one consultations worker
        deployment.start("consultations-api-1", "consultations", "api")
        deployment.start("consultations-api-2", "consultations", "api")
        deployment.start("consultations-worker", "consultations", "worker")
        deployment.start("booking")
        deployment.start("projections", "projections", "worker")
        deployment.start_gateway()
        yield deployment
    finally:
        deployment.shut_down()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
