"""Switching traffic from one version of the API to the next loses no request, under load.

What runs: two (or three) real ``clinic run registry --role api`` processes, the "versions", on
one PostgreSQL schema; nginx on loopback in front of them; a load generator of threads sending
``POST /v1/patients`` and ``GET /v1/patients/{id}`` through nginx; and a small controller that
does what Kubernetes' endpoints controller and ingress-nginx do for a Service: it polls every
version's ``/health/ready`` and keeps nginx's upstream equal to the set of ready versions
(rewrite the upstream, ``nginx -s reload``, wait until only the new worker is left).

Why the registry's API role on PostgreSQL: a switch is only realistic when both versions share
the state. The registry API needs nothing but its event store (no broker, no Redis), and every
request of the load writes: a registration appends a patient, a read appends to that patient's
access log — so the versions write the same aggregates concurrently (optimistic concurrency
across processes), and a patient registered through one version is read through the other.

nginx is told not to retry (``proxy_next_upstream off``): a request that reaches a closed port
fails, so zero failures comes from the app's draining (readiness 503 from SIGTERM on while it
goes on serving for ``CLINIC_DRAIN_SECONDS``, then uvicorn's graceful shutdown) and from the
controller following readiness — not from nginx hiding errors. The second test kills a version
with SIGKILL instead and sees requests fail: the harness can tell.

Each client request opens its own connection (``Connection: close``), as the idempotency of a
POST cannot be assumed by a client that would retry on a stale keep-alive connection.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import services
from tests.kit import eventually
from tests.private_servers import free_port

ROOT = Path(__file__).resolve().parents[2]
CLINIC = [sys.executable, "-m", "interfaces.cli.main"]
DRAIN_SECONDS = 2
"""How long a version goes on serving after SIGTERM (> the 1 s readiness cache + the controller's poll)."""
POLL_SECONDS = 0.05
CLIENTS = 6
SERVED_PER_PHASE = 40
"""Requests each phase must see served before the next step (a count, not a time)."""


def send(port: int, path: str, headers: dict[str, str] | None = None,
         body: dict | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection; raises OSError (refused, reset) like a client would see."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST" if body is not None else "GET", path,
                           body=json.dumps(body).encode() if body is not None else None,
                           headers={"Connection": "close", "Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


class Version:
    """One ``clinic run registry --role api`` process: a version of the API."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.port = free_port()
        self.log = log
        with open(log, "ab") as output:
            self.process = subprocess.Popen(
                [*CLINIC, "run", "registry", "--role", "api", "--port", str(self.port),
                 "--internal-port", str(free_port())], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def readiness(self) -> int:
        """``/health/ready``'s status; 0 when nothing answers (the port is closed)."""
        try:
            return send(self.port, "/health/ready")[0]
        except OSError:
            return 0

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, f"{self.name} exited:\n{self.tail()}"
            return self.readiness() == 200
        eventually(ready, timeout=60, what=f"{self.name} ready")

    def tail(self) -> str:
        return self.log.read_text()[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class Balancer:
    """nginx on loopback, and the controller that keeps its upstream to the versions that are ready."""

    def __init__(self, nginx: str, runtime: Path) -> None:
        self.nginx, self.runtime = nginx, runtime
        self.port = free_port()
        self.config = runtime / "nginx.conf"
        self.generation = 0
        self.upstream: tuple[Version, ...] = ()
        self.candidates: list[Version] = []
        self.observed: dict[str, set[int]] = {}
        """Every readiness status the controller saw, by version (503 while draining; 0: port closed)."""
        self.settled_at: dict[str, float] = {}
        """When the upstream without a version had taken over (monotonic), by the version removed."""
        self.process: subprocess.Popen | None = None
        self._following = threading.Event()
        self._following.set()
        self._looking = threading.Lock()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def start(self, versions: list[Version]) -> None:
        self.candidates = list(versions)
        self._write(tuple(versions))
        self.process = subprocess.Popen([self.nginx, "-e", str(self.runtime / "error.log"), "-p", str(self.runtime),
                                         "-c", str(self.config)])
        eventually(self._settled, timeout=10, what="nginx serving")
        self._thread.start()

    def add(self, version: Version) -> None:
        self.candidates.append(version)

    def pause(self) -> None:
        """The controller looks at nothing until ``resume`` (as between two readiness probes of a kubelet)."""
        self._following.clear()
        with self._looking:  # a look already under way ends first
            pass

    def resume(self) -> None:
        self._following.set()

    def stop(self) -> None:
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish in-flight requests
            self.process.wait(timeout=10)

    def _follow(self) -> None:
        while not self._halt.is_set():
            if self._following.wait(POLL_SECONDS):
                with self._looking:
                    if self._following.is_set():
                        self._look()
            self._halt.wait(POLL_SECONDS)

    def _look(self) -> None:
        statuses = {version: version.readiness() for version in self.candidates}
        for version, status in statuses.items():
            self.observed.setdefault(version.name, set()).add(status)
        ready = tuple(version for version in self.candidates if statuses[version] == 200)
        if ready and ready != self.upstream:
            removed = [version for version in self.upstream if version not in ready]
            self._write(ready)
            subprocess.run([self.nginx, "-p", str(self.runtime), "-c", str(self.config), "-s", "reload"],
                           check=True, capture_output=True, timeout=10)
            eventually(self._settled, timeout=15, what="the reloaded nginx alone")
            for version in removed:
                self.settled_at[version.name] = time.monotonic()

    def _write(self, versions: tuple[Version, ...]) -> None:
        self.generation += 1
        self.upstream = versions
        servers = "".join(f"        server {version.address};\n" for version in versions)
        self.config.write_text(NGINX_CONF.format(runtime=self.runtime, port=self.port, servers=servers,
                                                 generation=self.generation))

    def _settled(self) -> bool:
        """nginx answers with the newest config, and the workers of the older ones are gone."""
        try:
            status, _, body = send(self.port, "/__generation")
        except OSError:
            return False
        return status == 200 and body.decode() == str(self.generation) and len(self._workers()) == 1

    def _workers(self) -> list[int]:
        assert self.process is not None
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended while we looked
            if int(fields[1]) == self.process.pid:
                children.append(int(stat.parent.name))
        return children


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {runtime}/nginx.pid;
error_log {runtime}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {runtime}/client_body;
    proxy_temp_path {runtime}/proxy;
    fastcgi_temp_path {runtime}/fastcgi;
    uwsgi_temp_path {runtime}/uwsgi;
    scgi_temp_path {runtime}/scgi;
    upstream api {{
{servers}    }}
    server {{
        listen 127.0.0.1:{port};
        proxy_next_upstream off;
        location = /__generation {{ default_type text/plain; return 200 "{generation}"; }}
        location / {{
            proxy_pass http://api;
            add_header X-Served-By $upstream_addr always;
        }}
    }}
}}
"""


@dataclass
class Result:
    started: float
    ended: float
    method: str
    status: int
    served_by: str | None
    error: str | None = None
    written_by: str | None = None
    """For a read: the version that registered the patient."""


@dataclass
class Load:
    """Clients sending registrations and reads through nginx until stopped."""

    port: int
    token: str
    results: list[Result] = field(default_factory=list)
    patients: list[tuple[str, str]] = field(default_factory=list)
    """(patient_id, the version that registered it)."""

    def __post_init__(self) -> None:
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(CLIENTS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def served_by(self, address: str, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for r in self.results if r.served_by == address and r.started >= since and r.error is None)

    def failures(self) -> list[Result]:
        with self._lock:
            return [r for r in self.results if r.error is not None]

    def _client(self, number: int) -> None:
        rng = random.Random(number)
        while not self._halt.is_set():
            with self._lock:
                known = rng.choice(self.patients) if self.patients and rng.random() < 0.5 else None
            self._record(self._read(*known) if known else self._register(number))

    def _register(self, number: int) -> Result:
        body = {"name": f"Load {number}", "email": f"load{number}@example.org", "birth_date": "1990-01-01",
                "consent": True}
        result, payload = self._send("POST", "/v1/patients", 201, body)
        if result.error is None and result.served_by:
            with self._lock:
                self.patients.append((json.loads(payload)["patient_id"], result.served_by))
        return result

    def _read(self, patient_id: str, written_by: str) -> Result:
        result, _ = self._send("GET", f"/v1/patients/{patient_id}", 200)
        result.written_by = written_by
        return result

    def _send(self, method: str, path: str, expected: int, body: dict | None = None) -> tuple[Result, bytes]:
        started = time.monotonic()
        try:
            status, headers, payload = send(self.port, path, {"Authorization": f"Bearer {self.token}"}, body)
        except OSError as error:
            return Result(started, time.monotonic(), method, 0, None, f"{type(error).__name__}: {error}"), b""
        problem = None if status == expected else f"{status}: {payload[:200]!r}"
        return Result(started, time.monotonic(), method, status, headers.get("x-served-by"), problem), payload

    def _record(self, result: Result) -> None:
        with self._lock:
            self.results.append(result)


@pytest.fixture(scope="module")
def environment(tmp_path_factory) -> Iterator[dict[str, str]]:
    """One PostgreSQL schema, migrated, with the certificates and signing key every version shares."""
    services.require_postgres()
    services.require_redis()
    services.require_binary("nginx")
    import psycopg

    schema = f"clinic_switch_{uuid.uuid4().hex[:10]}"
    dsn = (f"host={services.POSTGRES_HOST} port={services.POSTGRES_PORT} dbname={services.POSTGRES_DB} "
           f"user={services.POSTGRES_USER}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    tmp = tmp_path_factory.mktemp("switch")
    env = {**os.environ, "CLINIC_DATA_DIR": str(tmp / "data"), "CLINIC_PERSISTENCE": "postgres",
           "POSTGRES_DBNAME": services.POSTGRES_DB, "POSTGRES_HOST": services.POSTGRES_HOST,
           "POSTGRES_PORT": str(services.POSTGRES_PORT), "POSTGRES_USER": services.POSTGRES_USER,
           "POSTGRES_PASSWORD": "", "POSTGRES_SCHEMA": schema, "POSTGRES_POOL_SIZE": "4",
           "POSTGRES_MAX_OVERFLOW": "4", "CLINIC_LOG_LEVEL": "WARNING", "CLINIC_DRAIN_SECONDS": str(DRAIN_SECONDS),
           # the registry answers its doctor directory from the read models (nothing runs that writes them here)
           "CLINIC_REDIS_URL": services.redis_url(), "CLINIC_REDIS_PREFIX": f"clinic:switch:{schema}:"}
    try:
        for command in (["db", "migrate"], ["certs", "init"]):
            done = subprocess.run([*CLINIC, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stdout + done.stderr
        yield env
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def deployment(environment: dict[str, str], tmp_path: Path) -> Iterator[tuple[Callable[[str], Version], Balancer, str]]:
    """Start versions by name, the balancer, and an admin token; everything stopped afterwards."""
    versions: list[Version] = []
    runtime = tmp_path / "nginx"
    runtime.mkdir()
    balancer = Balancer(services.require_binary("nginx"), runtime)
    token = subprocess.run([*CLINIC, "token", "--sub", "ops-1", "--role", "ADMIN"], cwd=ROOT, env=environment,
                           capture_output=True, text=True, timeout=60, check=True).stdout.strip()

    def start(name: str) -> Version:
        version = Version(name, environment, tmp_path / f"{name}.log")
        versions.append(version)
        version.wait_ready()
        return version

    try:
        yield start, balancer, token
    finally:
        balancer.stop()
        for version in versions:
            version.stop()


def test_switching_from_v1_to_v2_under_load_fails_no_request(deployment):
    start, balancer, token = deployment
    # given v1 behind nginx, under load
    v1 = start("v1")
    balancer.start([v1])
    load = Load(balancer.port, token)
    load.start()
    try:
        eventually(lambda: load.served_by(v1.address) >= SERVED_PER_PHASE, 30, "v1 serving the load")
        # when v2 starts and becomes ready, then it takes a share of the traffic
        v2 = start("v2")
        balancer.add(v2)
        eventually(lambda: load.served_by(v2.address) >= SERVED_PER_PHASE, 30, "v2 serving beside v1")
        # when v1 gets SIGTERM (the old version scaled down)
        terminated = time.monotonic()
        v1.process.send_signal(signal.SIGTERM)
        eventually(lambda: v1.name in balancer.settled_at, 30, "the balancer to drop v1")
        switched = balancer.settled_at[v1.name]
        eventually(lambda: load.served_by(v2.address, since=switched) >= SERVED_PER_PHASE, 30, "v2 alone")
        assert v1.process.wait(timeout=30) == 0, v1.tail()
    finally:
        load.stop()
    # then no request failed, both versions served, and only v2 after the switch
    failures = load.failures()
    assert not failures, f"{len(failures)} of {len(load.results)} requests failed, e.g. {failures[:5]}"
    after = [r for r in load.results if r.started >= switched]
    assert after and {r.served_by for r in after} == {v2.address}
    # v1 drained: its readiness said 503 while its port still answered, before the port closed
    assert {503, 0} <= balancer.observed[v1.name], balancer.observed
    # the versions share the state: patients registered through one were read through the other
    crossed = [r for r in load.results if r.method == "GET" and r.written_by and r.written_by != r.served_by]
    assert crossed
    report(load, v1, v2, terminated, switched)


def test_killing_a_version_without_draining_fails_requests(deployment):
    # the same harness sees failures when a version dies without draining (SIGKILL: no 503, no grace)
    start, balancer, token = deployment
    a, b = start("a"), start("b")
    balancer.start([a, b])
    load = Load(balancer.port, token)
    load.start()
    try:
        eventually(lambda: load.served_by(a.address) >= SERVED_PER_PHASE and
                   load.served_by(b.address) >= SERVED_PER_PHASE, 30, "both serving")
        # when b is killed before the balancer's next look (a probe period: Kubernetes takes seconds)
        balancer.pause()
        b.process.send_signal(signal.SIGKILL)
        b.process.wait(timeout=10)
        eventually(lambda: load.failures(), 30, "a request to the dead version")
        balancer.resume()
        eventually(lambda: b.name in balancer.settled_at, 30, "the balancer to drop b")
        switched = balancer.settled_at[b.name]
        eventually(lambda: load.served_by(a.address, since=switched) >= SERVED_PER_PHASE, 30, "a alone")
    finally:
        load.stop()
    # then the requests nginx gave b failed: nothing drained them
    failures = load.failures()
    assert failures, "killing a version abruptly must fail the requests it was given"
    assert {r.status for r in failures} <= {502}, failures[:5]
    assert 503 not in balancer.observed[b.name]  # it never said it was leaving
    print(f"\nSIGKILL: {len(failures)} of {len(load.results)} requests failed (502)")


def report(load: Load, v1: Version, v2: Version, terminated: float, switched: float) -> None:
    """What the switch measured (pytest -s shows it; docs/runbook.md quotes a run)."""
    served = {name: load.served_by(version.address) for name, version in (("v1", v1), ("v2", v2))}
    drained = load.served_by(v1.address, since=terminated)
    duration = load.results[-1].ended - load.results[0].started
    print(f"\nswitch: {len(load.results)} requests in {duration:.1f} s, 0 failed; served v1={served['v1']} "
          f"v2={served['v2']}; v1 served {drained} after its SIGTERM; v1 dropped "
          f"{switched - terminated:.2f} s after SIGTERM")
