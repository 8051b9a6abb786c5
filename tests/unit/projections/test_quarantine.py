"""A projection that raises on an event quarantines it and moves on; operators list, retry and skip.

The views are checked against a rebuild that skips exactly the quarantined events (Hypothesis over
random poison), on the in-memory store; ``tests/integration/projections/test_quarantine_redis.py``
runs the same story on Redis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from application.bootstrap import build_applications
from application.settings import Settings
from projections.memory_store import MemoryViewStore
from projections.ops import AppendToList, Op
from projections.quarantine import QUARANTINE_KEY, listed, retry, skip
from projections.runner import ProjectionRunner


@dataclass
class Names:
    """A projection listing registered patients' names; it raises on the names in ``poison``."""

    poison: set[str] = field(default_factory=set)
    name: str = "names"
    version: int = 1
    leaders: tuple[str, ...] = ("Registry",)

    def changes(self, event: Any) -> list[Op]:
        if type(event).__name__ != "Registered" or not hasattr(event, "name"):
            return []
        if event.name in self.poison:
            raise ValueError(f"cannot project {event.name}")
        return [AppendToList("all", event.name)]


@pytest.fixture
def registry():
    apps = build_applications(Settings(persistence="memory"))
    yield apps
    for app in apps.values():
        app.close()


def register(apps: dict[str, Any], names: list[str]) -> None:
    for name in names:
        apps["Registry"].register_patient(name, f"{name.lower()}@example.org", date(1990, 1, 1), True)


def test_a_poison_event_is_quarantined_the_rest_applied_and_the_position_reaches_the_head(registry):
    register(registry, ["Ana", "Bo", "Cy"])
    store, projection = MemoryViewStore(), Names(poison={"Bo"})
    runner = ProjectionRunner(registry, store, [projection])
    runner.catch_up()
    assert store.list_items("names", 1, "all") == ["Ana", "Cy"]
    [entry] = listed(store, [projection])["names"]
    assert (entry.leader, entry.error) == ("Registry", "ValueError: cannot project Bo")
    assert runner.status()["names"].lag == 0


def test_retry_applies_a_mended_event_and_skip_drops_one_given_up(registry):
    register(registry, ["Ana", "Bo", "Cy"])
    store, projection = MemoryViewStore(), Names(poison={"Bo", "Cy"})
    ProjectionRunner(registry, store, [projection]).catch_up()
    bo, cy = listed(store, [projection])["names"]
    projection.poison = {"Cy"}  # Bo's cause is fixed, Cy's not
    applied, failing = retry(registry, store, projection)
    assert ([e.id for e in applied], [e.id for e in failing]) == ([bo.id], [cy.id])
    assert store.list_items("names", 1, "all") == ["Ana", "Bo"]
    [still] = listed(store, [projection])["names"]
    assert still.id == cy.id and still.at >= cy.at
    assert [e.id for e in skip(store, projection, {cy.id})] == [cy.id]
    assert store.list_items("names", 1, QUARANTINE_KEY) == []


@given(st.lists(st.tuples(st.sampled_from(["Ana", "Bo", "Cy", "Di", "Ed"]), st.booleans()), max_size=15))
def test_the_views_equal_a_rebuild_that_skips_exactly_the_quarantined_events(story):
    apps = build_applications(Settings(persistence="memory"))
    try:
        names = [f"{name}{n}" for n, (name, _) in enumerate(story)]
        poison = {name for name, (_, bad) in zip(names, story, strict=True) if bad}
        register(apps, names)
        store, projection = MemoryViewStore(), Names(poison=poison)
        runner = ProjectionRunner(apps, store, [projection], batch_size=4)
        runner.catch_up()
        assert store.list_items("names", 1, "all") == [name for name in names if name not in poison]
        assert len(listed(store, [projection])["names"]) == len(poison)
        assert runner.status()["names"].lag == 0
    finally:
        for app in apps.values():
            app.close()
