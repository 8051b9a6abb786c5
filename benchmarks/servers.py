"""The servers benchmarks run against, whether they answer, and the machine's facts.

Defaults are the local servers the tests use (PostgreSQL ``test`` database, Redis db 0,
RabbitMQ guest/guest); each benchmark isolates itself (its own schema, key prefix or queue
prefix) and removes what it made. Override with ``CLINIC_BENCH_POSTGRES_HOST/PORT/DB/USER/PASSWORD``,
``CLINIC_BENCH_REDIS_URL`` and ``CLINIC_BENCH_AMQP_URL``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from interfaces.local_deployment.servers import Servers, program, reachable

POSTGRES = {
    "host": os.environ.get("CLINIC_BENCH_POSTGRES_HOST", "127.0.0.1"),
    "port": os.environ.get("CLINIC_BENCH_POSTGRES_PORT", "5432"),
    "dbname": os.environ.get("CLINIC_BENCH_POSTGRES_DB", "test"),
    "user": os.environ.get("CLINIC_BENCH_POSTGRES_USER", "postgres"),
    "password": os.environ.get("CLINIC_BENCH_POSTGRES_PASSWORD", ""),
}
REDIS_URL = os.environ.get("CLINIC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("CLINIC_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PROGRAMS = ("wrk", "nginx")


def missing() -> dict[str, str]:
    """What is unavailable now, each with the reason a benchmark needing it is skipped."""
    absent = {}
    if not reachable(POSTGRES["host"], int(POSTGRES["port"])):
        absent["postgres"] = f"PostgreSQL at {POSTGRES['host']}:{POSTGRES['port']} is unreachable"
    for name, url, default in (("redis", REDIS_URL, 6379), ("rabbitmq", AMQP_URL, 5672)):
        parsed = urlparse(url)
        if not reachable(parsed.hostname or "127.0.0.1", parsed.port or default):
            absent[name] = f"{name} at {parsed.hostname}:{parsed.port or default} is unreachable"
    for name in PROGRAMS:
        if program(name) is None:
            absent[name] = f"{name} is not installed (apt-get install -y {name})"
    return absent


def postgres_conninfo(dbname: str | None = None) -> str:
    """libpq's connection string for the benchmarks' database (or ``dbname`` on the same server)."""
    return " ".join(f"{k}={v}" for k, v in (POSTGRES | ({"dbname": dbname} if dbname else {})).items() if v)


def deployment_servers(dbname: str | None = None) -> Servers:
    """The servers for a local distributed deployment (in ``dbname`` instead of the benchmarks' database)."""
    return Servers(postgres_host=POSTGRES["host"], postgres_port=int(POSTGRES["port"]),
                   postgres_db=dbname or POSTGRES["dbname"], postgres_user=POSTGRES["user"],
                   postgres_password=POSTGRES["password"], amqp_url=AMQP_URL, redis_url=REDIS_URL)


@contextlib.contextmanager
def postgres_database(label: str) -> Iterator[str]:
    """A fresh database ``bench_<label>_<random>``, so ``pg_stat_database`` counts only what runs in it;
    dropped afterwards (its connections closed first)."""
    import psycopg

    name = f"bench_{label}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(postgres_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@contextlib.contextmanager
def postgres_schema(label: str) -> Iterator[str]:
    """A fresh schema ``bench_<label>_<random>``, dropped (with everything in it) afterwards."""
    import psycopg

    schema = f"bench_{label}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect(postgres_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def postgres_env(schema: str, pool_size: int = 5) -> dict[str, str]:
    """eventsourcing's ``POSTGRES_*`` variables for the benchmark server, in ``schema``."""
    return {"POSTGRES_DBNAME": POSTGRES["dbname"], "POSTGRES_HOST": POSTGRES["host"],
            "POSTGRES_PORT": POSTGRES["port"], "POSTGRES_USER": POSTGRES["user"],
            "POSTGRES_PASSWORD": POSTGRES["password"], "POSTGRES_SCHEMA": schema,
            "POSTGRES_POOL_SIZE": str(pool_size), "POSTGRES_MAX_OVERFLOW": "2"}


def machine() -> dict[str, Any]:
    """CPU count and model, OS, Python, library and server versions, the date (UTC)."""
    facts: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }
    for package in ("eventsourcing", "litestar", "uvicorn", "redis", "psycopg", "msgspec", "joserfc"):
        with contextlib.suppress(Exception):
            facts[package] = version(package)
    facts["postgresql"] = _quietly(_postgres_version)
    facts["redis_server"] = _quietly(_redis_version)
    facts["rabbitmq"] = _quietly(_rabbitmq_version)
    return facts


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _quietly(probe: Any) -> str | None:
    try:
        return probe()
    except Exception as error:  # noqa: BLE001 - a missing server is a fact, not a failure
        return f"unavailable ({error.__class__.__name__})"


def _postgres_version() -> str:
    import psycopg

    with psycopg.connect(postgres_conninfo(), connect_timeout=2) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row is not None else "unknown"


def _redis_version() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        return client.info("server")["redis_version"]
    finally:
        client.close()


def _rabbitmq_version() -> str:
    import asyncio

    import aiormq

    async def probe() -> str:
        connection = await asyncio.wait_for(aiormq.connect(AMQP_URL), 3)
        try:
            return str(connection.server_properties.get("version", "unknown"))
        finally:
            await connection.close()

    return asyncio.run(probe())
