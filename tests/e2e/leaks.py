"""Scans for personal data left behind: every stored byte, every Redis value, every queued message, every log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from application.settings import Settings
from infrastructure.read_models.redis_store import RedisViewStore
from tests import services

Leak = tuple[str, list[str]]


def found(data: bytes | str, secrets: Iterable[str]) -> list[str]:
    """Which of ``secrets`` appear in ``data``."""
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    return [secret for secret in secrets if secret in text]


def in_event_stores(settings: Settings, secrets: list[str]) -> list[Leak]:
    """Every stored byte: the SQLite files (events and keys), or every row of every table of the schema."""
    if settings.persistence == "sqlite":
        files = [p for p in settings.data_dir.rglob("*") if p.is_file()]
        assert {"registry.sqlite", "consultations.sqlite", "keys.sqlite"} <= {p.name for p in files}
        return [(p.name, found(p.read_bytes(), secrets)) for p in files if found(p.read_bytes(), secrets)]
    return in_postgres_schema(settings.database["POSTGRES_SCHEMA"], secrets)


def in_postgres_schema(schema: str, secrets: list[str]) -> list[Leak]:
    """Every row of every table of ``schema`` (the event stores, tracking and key store)."""
    import psycopg

    leaks, rows = [], 0
    with psycopg.connect(f"host={services.POSTGRES_HOST} port={services.POSTGRES_PORT} "
                         f"dbname={services.POSTGRES_DB} user={services.POSTGRES_USER}") as conn:
        tables = [t for (t,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))]
        assert {"registry_events", "consultations_events", "clinic_subject_keys"} <= set(tables)
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{schema}"."{table}"'):
                rows += 1
                leaks += [(table, found(v, secrets)) for v in row if isinstance(v, (bytes, str)) and found(v, secrets)]
    assert rows > 10
    return leaks


def in_redis(url: str, prefix: str, secrets: list[str]) -> list[Leak]:
    """Every key under ``prefix``, whatever its type, and every value in it."""
    views = RedisViewStore.from_url(url, prefix)
    client, leaks = views.client, []
    readers = {"hash": lambda k: json.dumps(client.hgetall(k)), "string": client.get,
               "list": lambda k: json.dumps(client.lrange(k, 0, -1)),
               "zset": lambda k: json.dumps(client.zrange(k, 0, -1)), "set": lambda k: json.dumps(list(client.smembers(k)))}
    keys = list(client.scan_iter(match=prefix + "*"))
    assert len(keys) > 5
    for key in keys:
        value = readers[client.type(key)](key)
        if found(key + value, secrets):
            leaks.append((key, found(key + value, secrets)))
    views.close()
    return leaks


def in_files(paths: Iterable[Path], secrets: list[str]) -> list[Leak]:
    """Log files (or any files): their whole content."""
    return [(p.name, found(p.read_bytes(), secrets)) for p in paths if found(p.read_bytes(), secrets)]


def in_queues(queues: Iterable[str], secrets: list[str]) -> tuple[int, list[Leak]]:
    """Every message waiting in ``queues`` (main, retry and dead-letter queues), headers and body.

    Messages are fetched without acknowledgement and the channel is closed, so they return to
    their queues untouched. Returns how many messages were read, and the leaks.
    """
    return asyncio.run(_scan_queues(list(queues), secrets))


async def _scan_queues(queues: list[str], secrets: list[str]) -> tuple[int, list[Leak]]:
    import aiormq

    connection = await aiormq.connect(services.amqp_url())
    channel = await connection.channel()
    read, leaks = 0, []
    for queue in queues:
        while (message := await _get(channel, queue)) is not None:
            read += 1
            text = repr(message.header.properties.headers) + message.body.decode("utf-8", "replace")
            if found(text, secrets):
                leaks.append((queue, found(text, secrets)))
    await connection.close()
    return read, leaks


async def _get(channel: Any, queue: str) -> Any:
    message = await channel.basic_get(queue, no_ack=False)
    return message if message.delivery_tag is not None and message.body is not None else None
