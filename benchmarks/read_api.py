"""The read API: ``GET /v1/consultations/{id}`` with a real ES256 token, answered from Redis, under wrk.

The server (``benchmarks/read_api_server.py``, pinned to core 0 with ``taskset -c 0``) is the
consultations service as ``clinic run consultations --role api`` builds it, over read models
that the projection runner wrote into Redis (a fresh key prefix, deleted after) from events in
SQLite files. wrk (pinned to core 1) holds 32 connections on 2 threads; a Lua script sets the
Authorization header and reports requests, non-2xx answers, errors and the latency percentiles.
The baselines are a trivial endpoint (a constant) under the same uvicorn config: in a bare
Litestar app, and inside our app with authentication off (so that ratio isolates the handler).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from application.bootstrap import build_applications, migrate
from application.settings import Settings
from infrastructure.read_models.redis_store import RedisViewStore, glob_escape
from interfaces.security.trust import dev_issuer
from projections.catalog import ALL_PROJECTIONS
from projections.runner import ProjectionRunner

from benchmarks import servers
from benchmarks.harness import Figure, benchmark
from benchmarks.projection_rebuild import booking
from benchmarks.read_api_server import TRIVIAL_PATH

CONNECTIONS, WRK_THREADS = 32, 2
SERVER_CORE, WRK_CORE = "0", "1"
BOOKINGS = 50
LUA = """wrk.headers["Authorization"] = "Bearer %s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"requests": %%d, "duration_us": %%d, "non2xx": %%d, "errors": %%d, '
    .. '"p50_us": %%d, "p90_us": %%d, "p99_us": %%d}\\n', summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Load:
    """What wrk measured: requests per second and latency percentiles (ms)."""

    rate: float
    p50: float
    p90: float
    p99: float
    cpu_ms: float = 0.0
    """Server CPU time (user + system, all threads) per request, in ms: steadier than req/s on a shared host."""


@dataclass(frozen=True)
class Fixture:
    """The stores, the token and the path the server answers."""

    env: dict[str, str]
    token: str
    path: str
    lua: Path


@contextlib.contextmanager
def fixture(tmp: Path) -> Iterator[Fixture]:
    """Bookings in SQLite, their read models in Redis under a fresh prefix (deleted after), a token."""
    prefix = f"bench:read:{uuid.uuid4().hex}:"
    settings = Settings(persistence="sqlite", data_dir=tmp, redis_url=servers.REDIS_URL, redis_prefix=prefix)
    migrate(settings)
    apps = build_applications(settings, create_table=False)
    store = RedisViewStore.from_url(servers.REDIS_URL, prefix)
    try:
        made = [booking(i, datetime(2027, 1, 4, 8, tzinfo=UTC)) for i in range(BOOKINGS)]
        for name, index in (("Consultations", 0), ("Scheduling", 1), ("Booking", 2)):
            apps[name].save(*(parts[index] for parts in made))
        ProjectionRunner(apps, store, ALL_PROJECTIONS).catch_up()
        consultation = made[0][0]
        token = dev_issuer(settings).issue(str(consultation.patient_id), ["PATIENT"], ttl_seconds=3600)
        lua = tmp / "auth.lua"
        lua.write_text(LUA % token)
        env = {"CLINIC_PERSISTENCE": "sqlite", "CLINIC_DATA_DIR": str(tmp), "CLINIC_REDIS_URL": servers.REDIS_URL,
               "CLINIC_REDIS_PREFIX": prefix, "CLINIC_LOG_LEVEL": "INFO"}
        yield Fixture(env, token, f"/v1/consultations/{consultation.id}", lua)
    finally:
        for app in apps.values():
            app.close()
        keys = list(store.client.scan_iter(match=glob_escape(prefix) + "*", count=1000))
        for start in range(0, len(keys), 500):
            store.client.unlink(*keys[start:start + 500])
        store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def server(mode: str, setup: Fixture, loop: str = "auto", http: str = "auto",
           cache: bool = True, access_log: bool = False) -> Iterator[tuple[str, int]]:
    """The benchmark server in ``mode`` on core 0; yields its base URL and pid once it answers."""
    port = free_port()
    env = os.environ | setup.env | {"CLINIC_ACCESS_LOG": "on" if access_log else "off"}
    log = setup.lua.parent / f"server-{mode}-{port}.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, sys.executable, "-m", "benchmarks.read_api_server", mode, str(port),
             "--loop", loop, "--http", http, *([] if cache else ["--no-token-cache"])], env=env, stdout=output, stderr=output)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(base + (setup.path if mode == "ours" else TRIVIAL_PATH), setup.token, process, log)
        yield base, process.pid  # taskset execs the server: same pid
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_answering(url: str, token: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``url`` until it answers 200 (deadline 60 s); the server's log in the error if it dies."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"benchmark server exited {process.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=2)
            if answer.status_code == 200:
                return
            raise RuntimeError(f"{url} answered {answer.status_code}: {answer.text[:300]}")
        time.sleep(0.1)  # polling a condition (the server answering) with a deadline
    raise RuntimeError(f"{url} did not answer within 60 s")


def wrk(url: str, lua: Path, seconds: int) -> Load:
    """One wrk run on core 1; refuses a run with any error or non-2xx answer."""
    command = ["taskset", "-c", WRK_CORE, "wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s",
               "--latency", "-s", str(lua), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    line = next(text for text in output.splitlines() if text.startswith("BENCH_JSON "))
    stats = json.loads(line.removeprefix("BENCH_JSON "))
    if stats["non2xx"] or stats["errors"] or not stats["requests"]:
        raise RuntimeError(f"wrk against {url}: {stats}")
    return Load(stats["requests"] / (stats["duration_us"] / 1e6), stats["p50_us"] / 1000, stats["p90_us"] / 1000,
                stats["p99_us"] / 1000)


def measure(mode: str, setup: Fixture, seconds: int, loop: str = "auto", http: str = "auto",
            cache: bool = True, access_log: bool = False) -> Load:
    """Warm the server up for a second, then measure it for ``seconds``."""
    with server(mode, setup, loop, http, cache, access_log) as (base, pid):
        url = base + (setup.path if mode == "ours" else TRIVIAL_PATH)
        wrk(url, setup.lua, 1)
        before = cpu_seconds(pid)
        load = wrk(url, setup.lua, seconds)
        used = cpu_seconds(pid) - before
        return dataclasses.replace(load, cpu_ms=1000 * used / (load.rate * seconds))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def access_log_figure(quiet: list[Load], logged: list[Load]) -> Figure:
    """Without uvicorn's access line (``CLINIC_ACCESS_LOG=off``, the default) beside with it, runs interleaved."""
    def mean(loads: list[Load], key: str) -> float:
        return sum(getattr(load, key) for load in loads) / len(loads)

    pairs = "; ".join(f"pair {i + 1}: {q.rate / w.rate:.2f}x, CPU {q.cpu_ms:.2f} vs {w.cpu_ms:.2f} ms/request, "
                      f"p99 {q.p99:.1f} vs {w.p99:.1f} ms" for i, (q, w) in enumerate(zip(quiet, logged, strict=True)))
    return Figure("read API without the access line (CLINIC_ACCESS_LOG=off, default)", mean(quiet, "rate"), "req/s",
                  "read API with uvicorn's access line (on)", mean(logged, "rate"),
                  f"{len(quiet)} interleaved pair(s), means; {pairs}")


def fast_stack_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("uvloop", "httptools"))


@benchmark("read_api", needs=("redis", "wrk"), summary="GET /v1/consultations/{id} from Redis vs a trivial endpoint")
def read_api(quick: bool, scale: float = 1.0) -> list[Figure]:
    """Our read endpoint's req/s and p99 beside a trivial endpoint, bare and inside our app."""
    seconds = max(1, int((5 if quick else 20) * scale))
    with tempfile.TemporaryDirectory() as tmp, fixture(Path(tmp)) as setup:
        ours, in_app, bare = (measure(mode, setup, seconds) for mode in ("ours", "trivial-in-app", "trivial-bare"))
        logged = [measure("ours", setup, seconds, access_log=True)]  # A/B beside ``ours``, interleaved (ABAB)
        quiet = [ours]
        for _ in range(0 if quick else 1):
            quiet.append(measure("ours", setup, seconds))
            logged.append(measure("ours", setup, seconds, access_log=True))
        uncached = measure("ours", setup, seconds, cache=False)
        plain_stack = measure("ours", setup, seconds, "asyncio", "h11") if fast_stack_installed() else None
    load = f"wrk -t{WRK_THREADS} -c{CONNECTIONS} {seconds}s; server on core {SERVER_CORE}, wrk on core {WRK_CORE}"
    figures = [
        Figure("read API GET /v1/consultations/{id} vs bare trivial app", ours.rate, "req/s",
               "trivial endpoint, bare Litestar app", bare.rate, f"{load}; p50 {ours.p50:.1f} ms; server CPU {ours.cpu_ms:.2f} ms/request (bare trivial: "
               f"{bare.cpu_ms:.2f})",
               ">= 0.5x baseline", ours.rate >= 0.5 * bare.rate),
        Figure("read API GET /v1/consultations/{id} vs trivial endpoint in our app", ours.rate, "req/s",
               "trivial endpoint inside our app, auth off", in_app.rate, f"isolates the handler's cost; server CPU {in_app.cpu_ms:.2f} ms/request"),
        Figure("read API p99 latency at 32 connections", ours.p99, "ms", "trivial endpoint, bare app, p99",
               bare.p99, f"p90 {ours.p90:.1f} ms", "<= 10 ms", ours.p99 <= 10, higher_is_better=False),
        Figure("trivial endpoint inside our app vs bare app", in_app.rate, "req/s", "trivial endpoint, bare app",
               bare.rate, f"our HTTP stack (correlation id, headers, metrics, checks, event metadata; no token); "
               f"server CPU {in_app.cpu_ms:.3f} vs {bare.cpu_ms:.3f} ms/request (CPU ratio "
               f"{bare.cpu_ms / in_app.cpu_ms:.2f}); p99 {in_app.p99:.1f} vs {bare.p99:.1f} ms",
               ">= 0.7x baseline", in_app.rate >= 0.7 * bare.rate),
    ]
    figures.append(Figure("read API with the verified-token cache", ours.rate, "req/s",
                          "read API verifying every token (ES256)", uncached.rate,
                          f"p99 {ours.p99:.1f} ms (without the cache: {uncached.p99:.1f} ms); server CPU "
                          f"{ours.cpu_ms:.2f} ms/request (without: {uncached.cpu_ms:.2f})"))
    figures.append(access_log_figure(quiet, logged))
    if plain_stack is not None:
        figures.append(Figure("read API on uvloop + httptools (uvicorn's auto)", ours.rate, "req/s",
                              "read API on asyncio + h11", plain_stack.rate,
                              f"p99 {ours.p99:.1f} ms (asyncio + h11: {plain_stack.p99:.1f} ms); server CPU "
                              f"{ours.cpu_ms:.2f} ms/request (asyncio + h11: {plain_stack.cpu_ms:.2f})"))
    return figures
