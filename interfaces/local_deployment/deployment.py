"""A whole distributed deployment on this machine: five services, the authorization server, nginx,
on PostgreSQL, RabbitMQ and Redis.

Each service is a separate OS process (``clinic run``); the deployment is isolated by its own
PostgreSQL schema, AMQP prefix, Redis key prefix, data directory (auth files, certificates) and
ports, and everything is removed afterwards. Security is as in production: people log in to
``clinic run auth`` (code flow + PKCE) for their tokens; every service finds the issuer's keys
by discovery; the booking service gets its own client-credentials token for the registry.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yarl import URL

from application.bootstrap import SYSTEM, database_roles_of
from application.services import broker_users
from application.settings import Settings
from infrastructure.database_roles import drop as drop_roles
from infrastructure.messaging.permissions import rabbitmqctl_commands
from infrastructure.messaging.topology import Topology
from infrastructure.security.scopes import PUBLIC_SCOPES
from interfaces.http.contexts import PROJECTIONS
from interfaces.local_deployment.oauth_client import user_token
from interfaces.local_deployment.otlp import OtlpReceiver
from interfaces.local_deployment.servers import DeploymentError, Servers, free_port, program, wait_for
from interfaces.security.trust import CONSOLE_SCOPES

CLINIC = [sys.executable, "-m", "interfaces.cli.main"]
SOURCE_ROOT = Path(__file__).resolve().parents[2]
"""The source checkout, when the package runs from one: its committed OpenAPI document and deprecation guide."""
DEADLINE_SECONDS = 6
WEB_CLIENT = "e2e-web"
REDIRECT_URI = "http://127.0.0.1:9/callback"
"""Never visited: the sign-in reads the code from the redirect's Location header, as an app's handler would."""
PASSWORD = "e2e password, long enough"
READY_SECONDS = 60
LOAD_RATE_LIMIT = 10_000
"""The gateway's rate limits here: every load comes from one address with a few tokens (benchmarks, soaks)."""
GATEWAY = "gateway"
"""The process name of nginx's access log among ``LocalDeployment.log_lines``."""


@dataclass(frozen=True)
class LogLine:
    """One JSON log line, parsed, and the process that wrote it."""

    process: str
    """The process's name in the deployment (``booking``, ``consultations-api-1``, …; ``gateway`` for nginx)."""
    number: int
    """Its line number in that process's log file (1-based)."""
    fields: dict[str, Any]
    """The JSON object: ``timestamp level service event logger correlation_id … trace_id span_id``."""


class LocalDeployment:
    """The running deployment and the handles needed to use it, measure it or break it."""

    def __init__(self, tmp: Path, schema: str, servers: Servers, env: dict[str, str] | None = None,
                 tracing: bool = True) -> None:
        self.tmp = tmp
        self.servers = servers
        self.prefix = f"e2e{uuid.uuid4().hex[:8]}"
        self.ports: dict[str, int] = {}
        """Each process's HTTP port (the API, or a worker's health probes), by process name."""
        self.roles: dict[str, tuple[str, str]] = {}
        self.database_roles = database_roles_of(self.prefix)
        """Each service's PostgreSQL login role (``clinic db migrate --roles``), the projection worker's too."""
        self.broker_urls: dict[str, str] = {}
        """Each service's broker URL with its own user (``add_broker_users``); empty: the servers' user for all."""
        self.internal_port = free_port()
        self.gateway_port = free_port()
        self.auth_port = free_port()
        self.auth_internal_port = free_port()
        """The authorization server's HTTPS endpoint for the services (JWKS, service tokens)."""
        self.users: set[tuple[str, str]] = set()
        self.otlp = OtlpReceiver().start() if tracing else None
        """Every span the services export (OTLP/HTTP); ``None`` without tracing."""
        self.env = {**os.environ, **self._settings(schema), **(env or {})}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.gateway: subprocess.Popen[bytes] | None = None

    def _settings(self, schema: str) -> dict[str, str]:
        """The services' environment: this deployment's stores, prefixes, issuer and short timeouts."""
        return {
            "CLINIC_DATA_DIR": str(self.tmp / "data"), "CLINIC_PERSISTENCE": "postgres",
            **self.servers.postgres_env(schema),
            "POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "3",  # other users share the server's 100 connections
            "CLINIC_AMQP_URL": self.servers.amqp_url, "CLINIC_AMQP_PREFIX": self.prefix,
            "CLINIC_REGISTRY_URL": f"https://127.0.0.1:{self.internal_port}",
            "CLINIC_SAGA_DEADLINE_SECONDS": str(DEADLINE_SECONDS), "CLINIC_RUNNER_TICK_SECONDS": "0.2",
            "CLINIC_REGISTRY_BREAKER_RESET_SECONDS": "1",
            "CLINIC_REDIS_URL": self.servers.redis_url, "CLINIC_REDIS_PREFIX": f"{self.prefix}:views:",
            "CLINIC_JWT_ISSUER": self.issuer,
            # the services reach the issuer over HTTPS, verified against the clinic's CA (as in a cluster)
            "CLINIC_OAUTH_TOKEN_URL": f"{self.in_cluster_auth}/oauth/token",
            "CLINIC_JWKS_URL": f"{self.in_cluster_auth}/.well-known/jwks.json",
            "CLINIC_AUTH_CA_FILE": str(self.tmp / "data" / "pki" / "ca.pem"),
            "CLINIC_CLIENT_ID": "booking",
            # the tests' webhook receivers listen on plain http on loopback
            "CLINIC_WEBHOOK_ALLOW_HTTP": "on", "CLINIC_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "on",
            "CLINIC_WEBHOOK_RETRY_SECONDS": "0.5",
            # every client signs in from 127.0.0.1: the per-IP limits would stop a test suite or a benchmark
            "CLINIC_AUTH_LOGIN_RATE_LIMIT": "10000/minute", "CLINIC_AUTH_TOKEN_RATE_LIMIT": "10000/minute",
            **({"OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
               if self.otlp is not None else {}),
        }

    @property
    def partitions(self) -> int:
        """How many partitions each follower's queue is split into (``CLINIC_PARTITIONS``)."""
        return int(self.env.get("CLINIC_PARTITIONS", "1"))

    @property
    def base(self) -> str:
        """The gateway's URL: the API, as clients see it."""
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def in_cluster_auth(self) -> str:
        return f"https://127.0.0.1:{self.auth_internal_port}"

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

    def start_console(self) -> None:
        """The operations console, as the authorization server's public client ``clinic-console``, behind the
        gateway (it reaches the broker as its own user: the followers' dead letters only)."""
        self.env["CLINIC_CONSOLE_URL"] = self.base
        self.clinic("auth", "client", "add", Settings.console_client_id, "--public", "--redirect-uri", f"{self.base}/console/callback",
                    *[arg for scope in CONSOLE_SCOPES for arg in ("--scope", scope)])
        self.start("console")

    def operator(self, name: str, role: str = "ADMIN") -> tuple[str, str]:
        """An operator's sign-in (registered once): their user name and password at the authorization server."""
        if (name, role) not in self.users:
            self.clinic("auth", "user", "add", name, "--sub", name, "--role", role, "--password-stdin",
                        stdin=PASSWORD + "\n")
            self.users.add((name, role))
        return name, PASSWORD

    def clinic(self, *args: str, stdin: str | None = None) -> str:
        """Run a ``clinic`` command with the deployment's settings; its output (raises if it fails)."""
        result = subprocess.run([*CLINIC, *args], cwd=self.tmp, env=self.env, capture_output=True, text=True,
                                timeout=60, input=stdin)
        if result.returncode != 0:
            raise DeploymentError(f"clinic {' '.join(args)} exited {result.returncode}: "
                                  f"{result.stdout}{result.stderr}")
        return result.stdout.strip()

    def start(self, name: str, service: str | None = None, role: str = "all") -> None:
        """Start process ``name`` (default: the service of that name, API and worker in one); wait until ready."""
        service, role = self.roles.setdefault(name, (service or name, role))
        port = self.ports.setdefault(name, free_port())
        with open(self.tmp / f"{name}.log", "a") as log:  # the child keeps its own descriptor
            self.processes[name] = subprocess.Popen(
                [*CLINIC, "run", service, "--role", role, "--port", str(port),
                 "--internal-port", str(self.auth_internal_port if service == "auth" else self.internal_port)],
                cwd=self.tmp, env=self.env_of(service), stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.ready(name), timeout=READY_SECONDS, what=f"{name} ready")

    def env_of(self, service: str) -> dict[str, str]:
        """A service's environment: the deployment's, signing in to PostgreSQL as the service's own role and
        to the broker as its own user (declaring its own queues only)."""
        env = dict(self.env)
        if service in self.database_roles:
            env["POSTGRES_USER"] = self.database_roles[service]
        if service in self.broker_urls:
            env |= {"CLINIC_AMQP_URL": self.broker_urls[service], "CLINIC_AMQP_DECLARE": "own"}
        return env

    def add_broker_users(self) -> None:
        """Declare the topology as the administrator, then (with ``rabbitmqctl``) give each service a user of
        its own with exactly its permissions (``clinic broker permissions``)."""
        self.clinic("broker", "setup")
        rabbitmqctl = program("rabbitmqctl") if self.servers.rabbitmqctl else None
        if rabbitmqctl is None:
            return
        admin = URL(self.servers.amqp_url)
        for service, permissions in broker_users(Settings.from_env(self.env)).items():
            password = secrets.token_hex(16)  # never a leading "-", which rabbitmqctl would read as an option
            _rabbitmqctl(rabbitmqctl, "add_user", permissions.user, password)
            self.broker_urls[service] = str(admin.with_user(permissions.user).with_password(password))
            for command in rabbitmqctl_commands(permissions):
                _rabbitmqctl(rabbitmqctl, *command[1:])

    def remove_broker_users(self) -> None:
        rabbitmqctl = program("rabbitmqctl")
        users = [URL(url).user or "" for url in self.broker_urls.values()]
        self.broker_urls.clear()
        if rabbitmqctl is not None:
            for user in users:
                _rabbitmqctl(rabbitmqctl, "delete_user", user)

    def upstreams(self) -> dict[str, list[str]]:
        """Each service's API replicas, for the gateway (the projection worker answers for the read models)."""
        replicas: dict[str, list[str]] = {}
        for name, (service, role) in self.roles.items():
            # the issuer has its own address, not behind /v1; of the workers, only the projection worker has an API
            if service != "auth" and (role != "worker" or service == PROJECTIONS):
                replicas.setdefault(service, []).append(f"127.0.0.1:{self.ports[name]}")
        return replicas

    def stop(self, name: str, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` to process ``name`` and wait for it; its exit status."""
        process = self.processes.pop(name)
        process.send_signal(sig)
        return process.wait(timeout=30)

    def workers_of(self, service: str) -> list[str]:
        """The processes running a worker of ``service`` (role ``worker`` or ``all``)."""
        return [name for name, (of, role) in self.roles.items() if of == service and role != "api"
                and name in self.processes]

    def leader_of(self, service: str) -> str | None:
        """Which of ``service``'s workers leads it now (``clinic_worker_leading`` on its ``/metrics``)."""
        leading = [name for name in self.workers_of(service) if self._leads(name, service)]
        return leading[0] if len(leading) == 1 else None

    def _leads(self, name: str, service: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name]}/metrics", timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return False
        return any(line.startswith("clinic_worker_leading{") and line.endswith(" 1.0") for line in text.splitlines())

    def ready(self, name: str) -> bool:
        """Whether process ``name`` answers 200 on ``/health/ready`` (raises if it exited)."""
        process = self.processes[name]
        if process.poll() is not None:
            raise DeploymentError(f"{name} exited: {(self.tmp / f'{name}.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name]}/health/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def start_gateway(self) -> None:
        """nginx with the config ``clinic gateway`` writes (as an operator would run it)."""
        nginx = program("nginx")
        if nginx is None:
            raise DeploymentError("nginx is not installed (apt-get install -y nginx)")
        runtime, config = self.tmp / "gateway", self.tmp / "gateway" / "nginx.conf"
        self.clinic("gateway", "--listen", f"127.0.0.1:{self.gateway_port}", "--runtime-dir", str(runtime),
                    "--output", str(config), *self._documents(), "--per-address", str(LOAD_RATE_LIMIT),
                    "--per-token", str(LOAD_RATE_LIMIT),
                    *[arg for service, addresses in self.upstreams().items()
                      for arg in (f"--{service}", ",".join(addresses))])
        self.gateway = subprocess.Popen([nginx, "-e", str(runtime / "error.log"), "-p", str(runtime),
                                         "-c", str(config)])
        wait_for(lambda: self.call("GET", "/health/live")[0] == 200, timeout=30, what="gateway live")

    def _documents(self) -> list[str]:
        """The gateway's ``--spec`` and ``--guide``: the source checkout's, else a generated OpenAPI document."""
        spec, guide = SOURCE_ROOT / "specs" / "openapi.json", SOURCE_ROOT / "docs" / "deprecation.md"
        if not spec.is_file():
            spec = self.tmp / "openapi.json"
            self.clinic("openapi", "--output", str(spec))
        return ["--spec", str(spec), *(["--guide", str(guide)] if guide.is_file() else [])]

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
        """One request through the gateway: its status and JSON body (0 and None when nothing answered)."""
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

    def log_lines(self, strict: bool = False) -> list[LogLine]:
        """Every complete line each process has written so far that is one JSON object, parsed: the
        deployment's logs as a central log store indexes them, to filter as an operator would (by
        ``correlation_id``, ``trace_id``, ``service``).

        Read, process by process (every process started, stopped ones included) and in file order: each
        process's stdout and stderr (``<tmp>/<name>.log``) and nginx's access log (JSON, process ``gateway``).
        nginx's error log is plain text and not read. A line that is not a JSON object (whatever a process
        printed before its logging was configured) is skipped, or with ``strict`` raises
        :class:`DeploymentError` naming the process and line. A last line still being written (no newline
        yet) is left for a later call.
        """
        files = [(name, self.tmp / f"{name}.log") for name in self.roles]
        files.append((GATEWAY, self.tmp / "gateway" / "access.log"))
        lines = []
        for process, path in files:
            if not path.is_file():
                continue
            complete = path.read_text(errors="replace").split("\n")[:-1]
            for number, text in enumerate(complete, 1):
                fields = _json_object(text)
                if fields is not None:
                    lines.append(LogLine(process, number, fields))
                elif strict and text.strip():
                    raise DeploymentError(f"{path.name}:{number} of {process} is not a JSON object: {text[:300]}")
        return lines

    def queue_depths(self) -> dict[str, int]:
        """Messages ready in each of the deployment's queues (followers' queues, retry queues, DLQs)."""
        return asyncio.run(_queue_depths(self.servers.amqp_url, queue_names(self.prefix, self.partitions)))

    def shut_down(self) -> None:
        """Stop every process (told all at once: each drains on its own, as pods do), then delete the
        deployment's exchange, queues and Redis keys."""
        stopping = list(self.processes.values())
        self.processes.clear()
        for process in stopping:
            process.send_signal(signal.SIGTERM)
        for process in stopping:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self.gateway is not None:
            self.gateway.terminate()
            self.gateway.wait(timeout=10)
        asyncio.run(_delete_broker_objects(self.servers.amqp_url, self.prefix, self.partitions))
        _drop_database_roles(self.servers, self.database_roles.values())
        self.remove_broker_users()
        _delete_redis_keys(self.servers.redis_url, f"{self.prefix}:views:")
        if self.otlp is not None:
            self.otlp.stop()


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def queue_names(prefix: str, partitions: int = 1) -> list[str]:
    """Every queue of a deployment under ``prefix``: each follower's queue or partitions, retries, DLQ."""
    topology = Topology(prefix=prefix, partitions=partitions)
    names: list[str] = []
    for follower in _followers():
        queues = topology.queues(follower)
        names += [*queues.consumed, *queues.retries, queues.dead_letters]
    return names


def _followers() -> list[str]:
    return sorted({follower for _, follower in SYSTEM.edges})


async def _queue_depths(url: str, queues: list[str]) -> dict[str, int]:
    """A passive declare per queue; a queue not declared yet holds nothing (the broker closes the channel)."""
    import aiormq

    connection = await aiormq.connect(url)
    depths = {}
    try:
        channel = await connection.channel()
        for queue in queues:
            try:
                depths[queue] = (await channel.queue_declare(queue, passive=True)).message_count or 0
            except aiormq.exceptions.ChannelNotFoundEntity:
                depths[queue] = 0
                channel = await connection.channel()
    finally:
        await connection.close()
    return depths


async def _delete_broker_objects(url: str, prefix: str, partitions: int) -> None:
    import aiormq

    connection = await aiormq.connect(url)
    channel = await connection.channel()
    for queue in queue_names(prefix, partitions):
        await channel.queue_delete(queue)
    topology = Topology(prefix=prefix, partitions=partitions)
    if partitions > 1:  # each follower's consistent-hash exchange
        for follower in _followers():
            await channel.exchange_delete(topology.queues(follower).main)
    await channel.exchange_delete(topology.exchange)
    await connection.close()


def _rabbitmqctl(program: str, *args: str) -> None:
    result = subprocess.run([program, "-q", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise DeploymentError(f"rabbitmqctl {args[0]} failed: {result.stdout}{result.stderr}")


def _drop_database_roles(servers: Servers, roles: Iterable[str]) -> None:
    import psycopg

    with psycopg.connect(servers.postgres_conninfo(), autocommit=True) as conn, conn.cursor() as cursor:
        drop_roles(cursor, roles)


def _delete_redis_keys(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.unlink(*keys)
    client.close()


@contextmanager
def postgres_schema(servers: Servers) -> Iterator[str]:
    """A fresh schema in the servers' database, dropped (with everything in it) afterwards."""
    import psycopg

    schema = f"clinic_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(servers.postgres_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect(servers.postgres_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextmanager
def deployed(tmp: Path, servers: Servers, env: dict[str, str] | None = None,
             tracing: bool = True, workers: int = 1) -> Iterator[LocalDeployment]:
    """The whole deployment in its own schema, prefixes and ports, under ``tmp``; removed on exit.

    ``env`` overrides the services' settings (a benchmark's pool sizes, deadline, log level);
    ``tracing=False`` exports no spans (no OTLP receiver); ``workers`` above 1 runs that many workers of
    each follower context (booking, scheduling, consultations) sharing partitioned queues
    (``CLINIC_WORKERS``, and ``CLINIC_PARTITIONS`` twice that unless ``env`` says). Raises
    :class:`DeploymentError` when a server does not answer or nginx is not installed.
    """
    if workers > 1:
        env = {"CLINIC_WORKERS": str(workers), "CLINIC_PARTITIONS": str(2 * workers), **(env or {})}
    missing = servers.unreachable() + ([] if program("nginx") else ["nginx is not installed (apt-get install -y nginx)"])
    if missing:
        raise DeploymentError("cannot deploy: " + "; ".join(missing))
    with postgres_schema(servers) as schema:
        deployment = LocalDeployment(tmp, schema, servers, env, tracing)
        try:
            _start_every_process(deployment, workers)
            yield deployment
        finally:
            deployment.shut_down()


def _start_every_process(deployment: LocalDeployment, workers: int = 1) -> None:
    """Migrations, certificates, the issuer, every service (two consultations APIs apart from its worker), the
    extra workers of the follower contexts, nginx."""
    deployment.clinic("db", "migrate", "--roles", deployment.prefix)
    deployment.add_broker_users()
    deployment.clinic("certs", "init")
    deployment.start_auth()
    deployment.start("registry")
    if workers == 1:
        deployment.start("scheduling")
        deployment.start("consultations-api-1", "consultations", "api")
        deployment.start("consultations-api-2", "consultations", "api")
        deployment.start("consultations-worker", "consultations", "worker")
        deployment.start("booking")
        deployment.start("notifications")
    else:  # APIs apart from the workers, so a worker can be killed without its API
        for service in ("scheduling", "consultations", "booking", "notifications"):
            deployment.start(f"{service}-api", service, "api")
            for number in range(1, workers + 1):
                deployment.start(f"{service}-worker-{number}", service, "worker")
    deployment.start("projections", "projections", "worker")
    deployment.start_console()
    deployment.start_gateway()
