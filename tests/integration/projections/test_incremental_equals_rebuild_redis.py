"""On Redis too, views kept up incrementally (any batches, restarts, re-sent batches) equal a rebuild."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings

from infrastructure.read_models.redis_store import RedisViewStore
from tests import services
from tests.integration.projections.conftest import delete_prefix
from tests.unit.projections.incremental import check_incremental_equals_rebuild, histories, plans


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories, plan=plans)
def test_incremental_views_equal_a_rebuild_on_redis(history, plan):
    services.require_redis()
    stores: list[RedisViewStore] = []

    def new_store(prefix: str | None = None) -> RedisViewStore:
        stores.append(RedisViewStore.from_url(services.redis_url(), prefix or f"test:views:{uuid.uuid4().hex}:"))
        return stores[-1]

    try:  # a restart is a new client over the same keys
        check_incremental_equals_rebuild(history, plan, new_store, reopen=lambda store: new_store(store.prefix))
    finally:
        for store in stores:
            delete_prefix(store, store.prefix)
            store.close()
