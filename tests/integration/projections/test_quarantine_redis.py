"""Quarantine on Redis: the entry is written with the batch that moves the position past the poison
event (one script), and retry and skip repair the serving version atomically."""

from __future__ import annotations

from projections.quarantine import QUARANTINE_KEY, listed, retry, skip
from projections.runner import ProjectionRunner
from tests.unit.projections.test_quarantine import Names, register, registry  # noqa: F401 - the fixture


def test_quarantine_retry_and_skip_on_redis(registry, store):
    register(registry, ["Ana", "Bo", "Cy", "Di"])
    projection = Names(poison={"Bo", "Di"})
    runner = ProjectionRunner(registry, store, [projection], batch_size=2)
    runner.catch_up()
    assert store.list_items("names", 1, "all") == ["Ana", "Cy"]
    assert runner.status()["names"].lag == 0
    bo, di = listed(store, [projection])["names"]
    projection.poison = {"Di"}
    assert [e.id for e in retry(registry, store, projection)[0]] == [bo.id]
    assert store.list_items("names", 1, "all") == ["Ana", "Cy", "Bo"]
    assert [e.id for e in skip(store, projection)] == [di.id]
    assert store.list_items("names", 1, QUARANTINE_KEY) == []
    register(registry, ["Ed"])
    runner.catch_up()  # the operator's repairs did not disturb the runner's position
    assert store.list_items("names", 1, "all")[-1] == "Ed"
