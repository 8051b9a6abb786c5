"""The Redis store keeps the ViewStore contract, with its key layout and one-script batches."""

from __future__ import annotations

import pytest
import redis

from infrastructure.read_models import redis_store
from infrastructure.read_models.redis_store import RedisViewStore
from projections.ops import AddToIndex, AppendToList, SetFields
from tests import services
from tests.integration.projections.conftest import delete_prefix
from tests.unit.projections.store_contract import NAME, StoreContract, V, seeded


class TestRedisStore(StoreContract):
    def test_keys_are_namespaced_by_prefix_projection_and_version(self, store):
        seeded(store)
        keys = set(store.client.scan_iter(match=store.prefix + "*"))
        assert keys == {f"{store.prefix}things:v1:{key}" for key in ("h", "z", "l", "position:Leader")}
        store.set_serving_version(NAME, V)
        assert store.client.get(f"{store.prefix}things:serving") == "1"

    def test_a_batch_is_one_script_sent_by_sha(self, store, monkeypatch):
        calls = []
        monkeypatch.setattr(store.client, "evalsha", lambda *a: calls.append(a[0]) or 1)
        store.apply(NAME, V, "Leader", 1, [SetFields("h", {"a": "1"}), AddToIndex("z", "m", 1.0)])
        assert calls == [redis_store.APPLY_SHA]

    def test_an_unknown_script_falls_back_to_eval(self, store, monkeypatch):
        monkeypatch.setattr(redis_store, "APPLY_SHA", "0" * 40)  # as after SCRIPT FLUSH or a failover
        assert store.apply(NAME, V, "Leader", 1, [AppendToList("l", "x")]) is True
        assert store.list_items(NAME, V, "l") == ["x"]

    def test_text_round_trips(self, store):
        assert store.apply(NAME, V, "Leader", 1, [SetFields("h", {"reason": 'dor "aguda" ção\n\\'})])
        assert store.get_fields(NAME, V, "h") == {"reason": 'dor "aguda" ção\n\\'}

    def test_deleting_a_version_goes_in_batches_and_matches_the_prefix_literally(self, redis_stores):
        store, lookalike = redis_stores("test:views:[odd]*:"), redis_stores("test:views:o:")
        assert store.apply(NAME, V, "Leader", 1, [SetFields(f"h{i}", {"a": "1"}) for i in range(1200)])
        assert lookalike.apply(NAME, V, "Leader", 1, [SetFields("h", {"a": "1"})])
        assert store.delete_version(NAME, V) == 1201
        assert lookalike.get_fields(NAME, V, "h") == {"a": "1"}

    def test_a_client_must_decode_responses(self):
        services.require_redis()
        with pytest.raises(ValueError, match="decode_responses"):
            RedisViewStore(redis.Redis.from_url(services.redis_url()))

    def test_big_batches_are_applied_whole(self, store):
        ops = [AppendToList("l", str(i)) for i in range(20_000)]
        assert store.apply(NAME, V, "Leader", 20_000, ops)
        assert store.client.llen(f"{store.prefix}{NAME}:v{V}:l") == 20_000


def test_delete_prefix_only_touches_its_own_keys(redis_stores):
    mine, other = redis_stores(), redis_stores()
    seeded(mine)
    seeded(other)
    assert delete_prefix(mine, mine.prefix) == 4
    assert other.dump(NAME, V) != {}

