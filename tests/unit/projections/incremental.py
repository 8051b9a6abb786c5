"""The incremental-equals-rebuild property, for any ViewStore (memory here, Redis in integration)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any

from hypothesis import strategies as st

from projections.catalog import ALL_PROJECTIONS
from projections.runner import ProjectionRunner
from tests.unit.projections.histories import History, commands, dump_all, expected_views, memory_apps, positions

plans = st.lists(st.one_of(
    st.tuples(st.just("record"), st.integers(1, 25)),
    st.tuples(st.just("step"), st.integers(1, 9)),
    st.tuples(st.just("catch_up"), st.integers(1, 4)),
    st.tuples(st.just("restart"), st.just(0)),
    st.tuples(st.just("duplicate"), st.integers(0, 1000)),
), min_size=4, max_size=40)
"""Interleavings of recording, one batch per leader (of a drawn size), a few rounds of catching up,
restarts and re-sent batches."""
histories = st.lists(commands, min_size=20, max_size=120)


class RecordingStore:
    """Passes everything to ``inner``; keeps the arguments of every batch it accepted."""

    def __init__(self, inner: Any, applied: list[tuple] | None = None) -> None:
        self.inner = inner
        self.applied = [] if applied is None else applied

    def apply(self, *args: Any) -> bool:
        accepted = self.inner.apply(*args)
        if accepted:
            self.applied.append(args)
        return accepted

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def check_incremental_equals_rebuild(history: Sequence[Any], plan: Sequence[tuple[str, int]],
                                     new_store: Callable[[], Any], reopen: Callable[[Any], Any]) -> None:
    """Run ``plan`` while recording ``history``; then the views equal a one-pass rebuild, and the aggregates."""
    apps, pending = memory_apps(), iter(history)
    recorded = History(apps)
    store = RecordingStore(new_store())
    runner = ProjectionRunner(apps, store, ALL_PROJECTIONS, batch_size=3)
    for action, n in plan:
        if action == "record":
            for command in islice(pending, n):
                recorded.run(command)
        elif action == "step":
            runner.batch_size = n
            runner.step()
        elif action == "catch_up":  # a few rounds, replies deferred where the store can
            runner.catch_up(max_batches=n)
        elif action == "restart":  # a fresh store object over the same data, and a fresh runner
            store = RecordingStore(reopen(store.inner), store.applied)
            runner = ProjectionRunner(apps, store, ALL_PROJECTIONS, batch_size=3)
        elif store.applied:
            resend(store.inner, store.applied[n % len(store.applied)])
    for command in pending:
        recorded.run(command)
    runner.catch_up()
    rebuilt = new_store()
    ProjectionRunner(apps, rebuilt, ALL_PROJECTIONS, batch_size=100_000).catch_up()
    assert dump_all(store) == dump_all(rebuilt)
    assert positions(store) == positions(rebuilt) == heads(apps)
    assert dump_all(rebuilt) == expected_views(recorded)


def resend(store: Any, args: tuple) -> None:
    """A batch delivered again (a retry after a lost reply, a second runner): refused, changes nothing."""
    name, version, leader, last_id, ops, expected = args
    assert store.apply(name, version, leader, last_id, ops, expected) is False
    assert store.apply(name, version, leader, last_id, ops) is False


def heads(apps: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(p.name, leader): apps[leader].recorder.max_notification_id() or 0
            for p in ALL_PROJECTIONS for leader in p.leaders}
