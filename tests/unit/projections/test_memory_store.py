"""The in-process store keeps the ViewStore contract (see store_contract.py)."""

from __future__ import annotations

import threading

import pytest

from projections.memory_store import MemoryViewStore
from projections.ops import AppendToList
from tests.unit.projections.store_contract import StoreContract


@pytest.fixture
def store() -> MemoryViewStore:
    return MemoryViewStore()


class TestMemoryStore(StoreContract):
    def test_an_unknown_op_refuses_the_whole_batch(self, store):
        with pytest.raises(TypeError, match="not a view op"):
            store.apply("p", 1, "L", 1, [AppendToList("l", "x"), "not an op"])
        assert store.dump("p", 1) == {}
        assert store.position("p", 1, "L") == 0

    def test_concurrent_writers_of_the_same_batch_apply_it_once(self, store):
        results: list[bool] = []
        threads = [threading.Thread(target=lambda: results.append(
            store.apply("p", 1, "L", 10, [AppendToList("l", "x")], expected_position=0))) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == [False] * 7 + [True]
        assert store.list_items("p", 1, "l") == ["x"]
