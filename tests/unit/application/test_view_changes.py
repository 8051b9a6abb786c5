"""What a process knows of the read models' changes: stamps for cached views, positions, waiters."""

from __future__ import annotations

import asyncio
import threading
import time

from application.view_changes import POSITIONS, ViewChanges
from projections.store import ViewChange


def change(position: int, *keys: str) -> ViewChange:
    return ViewChange("consultation_detail", 2, "Consultations", position, keys)


def test_a_key_s_stamp_moves_when_it_changes_and_every_stamp_moves_on_a_reset():
    changes = ViewChanges()
    assert changes.stamp("consultation_detail", "consultation:1") is None  # not live: nothing is trusted
    changes.reset()
    first = changes.stamp("consultation_detail", "consultation:1")
    changes.changed(change(5, "consultation:2"))
    assert changes.stamp("consultation_detail", "consultation:1") == first
    changes.changed(change(6, "consultation:1"))
    moved = changes.stamp("consultation_detail", "consultation:1")
    assert moved is not None and moved > first
    assert changes.position("consultation_detail", 2, "Consultations") == 6
    changes.lost()
    assert changes.stamp("consultation_detail", "consultation:1") is None
    changes.reset()
    assert changes.stamp("consultation_detail", "consultation:1") > moved
    assert changes.position("consultation_detail", 2, "Consultations") is None  # forgotten: read the store again


def test_a_thread_waiting_for_a_position_wakes_when_it_is_told():
    changes = ViewChanges()
    changes.reset()
    reached = lambda: (changes.position("consultation_detail", 2, "Consultations") or 0) >= 7  # noqa: E731
    threading.Timer(0.05, changes.changed, [change(7, "consultation:1")]).start()
    started = time.monotonic()
    assert changes.wait(reached, timeout=5)
    assert time.monotonic() - started < 1
    assert changes.wait(lambda: False, timeout=0.05) is False


def test_a_coroutine_waiting_on_a_key_wakes_for_that_key_and_runs_out_otherwise():
    changes = ViewChanges()
    changes.reset()
    seen: list[str] = []

    async def scenario() -> None:
        topic = ("consultation_detail", "consultation:1")
        threading.Timer(0.05, changes.changed, [change(3, "consultation:1")]).start()
        assert await changes.wait_async(lambda: changes.position("consultation_detail", 2, "Consultations") == 3,
                                        timeout=5, topic=topic)
        seen.append("woken")
        threading.Timer(0.01, changes.changed, [change(4, "consultation:2")]).start()
        assert await changes.wait_async(lambda: False, timeout=0.2, topic=topic) is False
        assert await changes.wait_async(_true_later(changes), timeout=5, topic=POSITIONS)

    asyncio.run(scenario())
    assert seen == ["woken"]


def _true_later(changes: ViewChanges):
    """An async condition (as the read side gives, reading the store in a thread) true after a change."""
    threading.Timer(0.05, changes.changed, [change(9, "consultation:3")]).start()

    async def condition() -> bool:
        await asyncio.sleep(0)
        return changes.position("consultation_detail", 2, "Consultations") == 9

    return condition
