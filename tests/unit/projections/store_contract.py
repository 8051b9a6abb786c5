"""What every ViewStore promises; subclassed with a ``store`` fixture per implementation."""

from __future__ import annotations

import time

import pytest

from projections.ops import AddToIndex, AppendToList, CopyToMembers, RemoveFromIndex, SetFields, SetFieldsIf

NAME, V = "things", 1


def seeded(store, last: int = 5) -> None:
    assert store.apply(NAME, V, "Leader", last, [SetFields("h", {"a": "1"}), AddToIndex("z", "m", 2.0),
                                                 AppendToList("l", "x")])


class StoreContract:
    """Semantics shared by the memory and Redis stores."""

    def test_a_batch_is_applied_with_its_position(self, store):
        seeded(store)
        assert store.get_fields(NAME, V, "h") == {"a": "1"}
        assert store.range_by_score(NAME, V, "z") == [("m", 2.0)]
        assert store.list_items(NAME, V, "l") == ["x"]
        assert store.position(NAME, V, "Leader") == 5

    def test_a_batch_at_or_below_the_position_is_refused_and_changes_nothing(self, store):
        seeded(store)
        before = store.dump(NAME, V)
        for last in (5, 4):
            assert store.apply(NAME, V, "Leader", last, [AppendToList("l", "again"), SetFields("h", {"a": "2"})]) \
                is False
        assert store.dump(NAME, V) == before
        assert store.position(NAME, V, "Leader") == 5

    def test_a_batch_read_after_another_position_is_refused(self, store):
        seeded(store)
        assert store.apply(NAME, V, "Leader", 9, [AppendToList("l", "y")], expected_position=3) is False
        assert store.list_items(NAME, V, "l") == ["x"]
        assert store.apply(NAME, V, "Leader", 9, [AppendToList("l", "y")], expected_position=5) is True
        assert store.list_items(NAME, V, "l") == ["x", "y"]

    def test_an_empty_batch_moves_the_position(self, store):
        assert store.apply(NAME, V, "Leader", 3, []) is True
        assert store.position(NAME, V, "Leader") == 3

    def test_positions_are_kept_per_leader_and_version(self, store):
        seeded(store)
        assert store.apply(NAME, V, "Other", 2, []) is True
        assert store.apply(NAME, V + 1, "Leader", 1, []) is True
        assert [store.position(NAME, V, "Leader"), store.position(NAME, V, "Other"),
                store.position(NAME, V + 1, "Leader"), store.position("else", V, "Leader")] == [5, 2, 1, 0]

    def test_a_batch_with_an_op_that_does_not_fit_changes_nothing(self, store):
        seeded(store)
        before = store.dump(NAME, V)
        with pytest.raises(Exception, match="WRONGTYPE"):
            store.apply(NAME, V, "Leader", 6, [AppendToList("l", "y"), SetFields("new", {"b": "1"}),
                                               AddToIndex("h", "m", 1.0)])
        assert store.dump(NAME, V) == before
        assert store.position(NAME, V, "Leader") == 5

    def test_set_fields_if_only_when_the_field_matches(self, store):
        seeded(store)
        assert store.apply(NAME, V, "Leader", 6, [SetFieldsIf("h", "a", "0", {"a": "no"}),
                                                  SetFieldsIf("missing", "a", "1", {"a": "no"})])
        assert store.get_fields(NAME, V, "h") == {"a": "1"}
        assert store.get_fields(NAME, V, "missing") == {}
        assert store.apply(NAME, V, "Leader", 7, [SetFieldsIf("h", "a", "1", {"a": "yes", "b": "2"})])
        assert store.get_fields(NAME, V, "h") == {"a": "yes", "b": "2"}

    def test_removing_from_an_index(self, store):
        seeded(store)
        assert store.apply(NAME, V, "Leader", 6, [RemoveFromIndex("z", "m"), RemoveFromIndex("z", "absent"),
                                                  RemoveFromIndex("none", "m")])
        assert store.range_by_score(NAME, V, "z") == []
        assert "z" not in store.dump(NAME, V)

    def test_ranges_by_score(self, store):
        ops = [AddToIndex("z", member, score) for member, score in
               [("c", 3.0), ("a", 1.0), ("b2", 2.0), ("b1", 2.0), ("d", 1_799_999_999.5)]]
        assert store.apply(NAME, V, "Leader", 1, ops)
        assert [m for m, _ in store.range_by_score(NAME, V, "z")] == ["a", "b1", "b2", "c", "d"]
        assert store.range_by_score(NAME, V, "z", reverse=True, count=3) == [
            ("d", 1_799_999_999.5), ("c", 3.0), ("b2", 2.0)]
        assert store.range_by_score(NAME, V, "z", 2, 3) == [("b1", 2.0), ("b2", 2.0), ("c", 3.0)]
        assert store.range_by_score(NAME, V, "z", 2, 3, reverse=True, offset=1, count=1) == [("b2", 2.0)]
        assert store.range_by_score(NAME, V, "z", offset=3) == [("c", 3.0), ("d", 1_799_999_999.5)]
        assert store.range_by_score(NAME, V, "absent") == []

    def test_list_items_by_inclusive_range(self, store):
        assert store.apply(NAME, V, "Leader", 1, [AppendToList("l", str(i)) for i in range(5)])
        assert store.list_items(NAME, V, "l") == ["0", "1", "2", "3", "4"]
        assert store.list_items(NAME, V, "l", 1, 2) == ["1", "2"]
        assert store.list_items(NAME, V, "l", -2) == ["3", "4"]
        assert store.list_items(NAME, V, "l", 0, -9) == []
        assert store.list_items(NAME, V, "absent") == []

    def test_many_hashes_at_once(self, store):
        seeded(store)
        assert store.get_many_fields(NAME, V, ["h", "absent", "h"]) == [{"a": "1"}, {}, {"a": "1"}]

    def test_a_serving_read_takes_the_hash_and_positions_of_the_serving_version(self, store):
        seeded(store)
        assert store.apply(NAME, V + 1, "Other", 3, [SetFields("h", {"a": "v2"})])
        read = store.read_serving(NAME, V, "h", ["Leader", "Other"])
        assert (read.version, read.fields, read.positions) == (V, {"a": "1"}, {"Leader": 5, "Other": 0})
        store.set_serving_version(NAME, V + 1)
        read = store.read_serving(NAME, V, "h", ["Leader", "Other"])
        assert (read.version, read.fields, read.positions) == (V + 1, {"a": "v2"}, {"Leader": 0, "Other": 3})
        assert store.read_serving(NAME, V, "absent", []).fields == {}

    def test_serving_version(self, store):
        assert store.serving_version(NAME) is None
        store.set_serving_version(NAME, 2)
        assert store.serving_version(NAME) == 2

    def test_deleting_a_version_leaves_other_versions_and_projections(self, store):
        seeded(store)
        assert store.apply(NAME, V + 1, "Leader", 5, [SetFields("h", {"a": "v2"})])
        assert store.apply("other", V, "Leader", 5, [SetFields("h", {"a": "o"})])
        store.set_serving_version(NAME, V + 1)
        assert store.delete_version(NAME, V) == 4  # three views and one position
        assert store.dump(NAME, V) == {}
        assert store.position(NAME, V, "Leader") == 0
        assert store.get_fields(NAME, V + 1, "h") == {"a": "v2"}
        assert store.get_fields("other", V, "h") == {"a": "o"}
        assert store.serving_version(NAME) == V + 1

    def test_dump_shows_views_not_positions(self, store):
        seeded(store)
        assert store.dump(NAME, V) == {"h": {"a": "1"}, "z": [("m", 2.0)], "l": ["x"]}

    def test_a_nan_score_refuses_the_whole_batch(self, store):
        with pytest.raises(ValueError, match="NaN"):
            store.apply(NAME, V, "Leader", 1, [AppendToList("l", "x"), AddToIndex("z", "m", float("nan"))])
        assert store.position(NAME, V, "Leader") == 0
        assert store.dump(NAME, V) == {}

    def test_copy_to_members_sets_the_source_fields_on_every_members_hash(self, store):
        # given: an index of two members, one with a hash already
        assert store.apply(NAME, V, "Leader", 1, [AddToIndex("ids", "a", 1.0), AddToIndex("ids", "b", 2.0),
                                                  SetFields("item:a", {"reason": "secret", "status": "OK"})])
        # when: a source is written and copied, in one batch
        assert store.apply(NAME, V, "Leader", 2, [SetFields("erasure", {"reason": "[erased]"}),
                                                  CopyToMembers("ids", "item:", "erasure")])
        # then
        assert store.get_fields(NAME, V, "item:a") == {"reason": "[erased]", "status": "OK"}
        assert store.get_fields(NAME, V, "item:b") == {"reason": "[erased]"}

    def test_copy_to_members_without_a_source_or_an_index_changes_nothing(self, store):
        assert store.apply(NAME, V, "Leader", 1, [AddToIndex("ids", "a", 1.0), SetFields("item:a", {"x": "1"})])
        assert store.apply(NAME, V, "Leader", 2, [CopyToMembers("ids", "item:", "absent"),
                                                  CopyToMembers("no-index", "item:", "ids-source")])
        assert store.dump(NAME, V) == {"ids": [("a", 1.0)], "item:a": {"x": "1"}}
        assert store.position(NAME, V, "Leader") == 2

    def test_copy_to_members_reaches_members_added_later_in_the_same_batch(self, store):
        assert store.apply(NAME, V, "Leader", 1, [SetFields("erasure", {"reason": "[erased]"})])
        assert store.apply(NAME, V, "Leader", 2, [SetFields("item:c", {"reason": "secret"}), AddToIndex("ids", "c", 3.0),
                                                  CopyToMembers("ids", "item:", "erasure")])
        assert store.get_fields(NAME, V, "item:c") == {"reason": "[erased]"}

    def test_copy_to_members_onto_a_member_that_is_not_a_hash_refuses_the_whole_batch(self, store):
        assert store.apply(NAME, V, "Leader", 1, [AddToIndex("ids", "a", 1.0), AppendToList("item:a", "x"),
                                                  SetFields("erasure", {"reason": "[erased]"})])
        before = store.dump(NAME, V)
        with pytest.raises(Exception, match="WRONGTYPE"):
            store.apply(NAME, V, "Leader", 2, [SetFields("new", {"b": "1"}), CopyToMembers("ids", "item:", "erasure")])
        with pytest.raises(Exception, match="WRONGTYPE"):
            store.apply(NAME, V, "Leader", 2, [CopyToMembers("item:a", "item:", "erasure")])
        assert store.dump(NAME, V) == before
        assert store.position(NAME, V, "Leader") == 1

    def test_a_watcher_is_told_each_batch_with_the_keys_it_wrote_and_a_reset_on_a_switch(self, store):
        watcher = Watcher()
        stop = store.watch(watcher)
        try:
            watcher.until(lambda: watcher.resets == 1)  # the feed is live
            seeded(store)
            store.apply(NAME, V, "Leader", 6, [SetFields("erasure", {"a": "gone"}), AddToIndex("z", "n", 3.0),
                                               CopyToMembers("z", "member:", "erasure")])
            watcher.until(lambda: len(watcher.changes) == 2)
            assert [(c.name, c.version, c.leader, c.position) for c in watcher.changes] == [
                (NAME, V, "Leader", 5), (NAME, V, "Leader", 6)]
            assert set(watcher.changes[0].keys) == {"h", "z", "l"}
            assert set(watcher.changes[1].keys) == {"erasure", "z", "member:m", "member:n"}  # each member copied onto
            assert store.apply(NAME, V, "Leader", 6, [AppendToList("l", "refused")]) is False
            store.set_serving_version(NAME, V + 1)
            watcher.until(lambda: watcher.resets == 2)
            assert len(watcher.changes) == 2  # a refused batch is no change
        finally:
            stop()
        assert store.apply(NAME, V + 1, "Leader", 1, [SetFields("h", {"a": "2"})])
        assert len(watcher.changes) == 2  # stopped (its listener is gone once stop returns): told nothing more


class Watcher:
    """A ``ChangeWatcher`` that keeps what it is told (from whichever thread tells it)."""

    def __init__(self) -> None:
        self.changes: list = []
        self.resets = 0
        self.losses = 0

    def changed(self, change) -> None:
        self.changes.append(change)

    def reset(self) -> None:
        self.resets += 1

    def lost(self) -> None:
        self.losses += 1

    def until(self, condition, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "not told in time"
            time.sleep(0.005)
