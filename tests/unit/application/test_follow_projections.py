"""The projection worker's loop over stores that cannot push (memory): it polls, follows live writes
and keeps a failed catch-up's error (for readiness) while it retries."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

from application.services import follow_projections
from projections.catalog import ALL_PROJECTIONS
from projections.consultation_detail import ConsultationDetail, consultation_key
from projections.memory_store import MemoryViewStore
from projections.runner import ProjectionRunner
from tests.unit.projections.histories import memory_apps

START = datetime(2027, 1, 4, 9, tzinfo=UTC)


def request(apps) -> uuid.UUID:
    return apps["Consultations"].request_consultation(uuid.uuid4(), uuid.uuid4(), START, "check-up")


async def following(runner: ProjectionRunner, apps, until, seconds: float = 2.0) -> list[BaseException | None]:
    """Run the loop (polling every millisecond) until ``until()``; the errors it kept meanwhile."""
    stop, errors = asyncio.Event(), []
    task = asyncio.create_task(follow_projections(runner, apps, stop, poll_seconds=0.001))
    deadline = time.monotonic() + seconds
    try:
        while not until():
            assert time.monotonic() < deadline, "not caught up in time"
            errors.append(runner.last_error)
            await asyncio.sleep(0.001)
    finally:
        stop.set()
        await task
    return errors


def test_the_loop_follows_live_writes():
    apps = memory_apps()
    store = MemoryViewStore()
    runner = ProjectionRunner(apps, store, ALL_PROJECTIONS)
    consultation_id = request(apps)
    asyncio.run(following(runner, apps, lambda: store.get_fields(
        "consultation_detail", ConsultationDetail.version, consultation_key(consultation_id)) != {}))


def test_the_loop_keeps_the_error_and_retries():
    apps = memory_apps()
    request(apps)

    class FailsOnce(MemoryViewStore):
        failed = False

        def apply(self, *args):
            if not self.failed:
                self.failed = True
                raise ConnectionError("store down")
            return super().apply(*args)

    runner = ProjectionRunner(apps, FailsOnce(), [ConsultationDetail()])
    errors = asyncio.run(following(runner, apps, lambda: runner.store.failed and runner.last_error is None
                                   and runner.status()["consultation_detail"].lag == 0))
    assert any(isinstance(error, ConnectionError) for error in errors)
