"""Redis fixtures: each test's keys live under its own prefix, deleted after (never FLUSHALL/FLUSHDB)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from infrastructure.read_models.redis_store import RedisViewStore, glob_escape
from tests import services


def delete_prefix(store: RedisViewStore, prefix: str) -> int:
    """Remove every key under ``prefix``: what FLUSHDB would do to this test's keys alone."""
    keys = list(store.client.scan_iter(match=glob_escape(prefix) + "*", count=1000))
    for start in range(0, len(keys), 500):
        store.client.unlink(*keys[start:start + 500])
    return len(keys)


@pytest.fixture
def redis_stores() -> Iterator[Callable[[str | None], RedisViewStore]]:
    """Make stores on the test Redis, under a fresh prefix (or the one given: a reopened store)."""
    services.require_redis()
    made: list[RedisViewStore] = []

    def make(prefix: str | None = None) -> RedisViewStore:
        store = RedisViewStore.from_url(services.redis_url(), prefix or f"test:views:{uuid.uuid4().hex}:")
        made.append(store)
        return store

    yield make
    for store in made:
        delete_prefix(store, store.prefix)
        store.close()


@pytest.fixture
def store(redis_stores) -> RedisViewStore:
    return redis_stores()
