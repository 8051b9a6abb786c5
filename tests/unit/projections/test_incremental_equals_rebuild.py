"""Views kept up incrementally (any batches, restarts, re-sent batches) equal a rebuild in one pass."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from projections.memory_store import MemoryViewStore
from tests.unit.projections.incremental import check_incremental_equals_rebuild, histories, plans


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories, plan=plans)
def test_incremental_views_equal_a_rebuild_on_the_memory_store(history, plan):
    check_incremental_equals_rebuild(history, plan, new_store=MemoryViewStore, reopen=lambda store: store)
