"""Push from PostgreSQL: a reader of another process's log wakes on the store's ``NOTIFY``, not a poll.

Real PostgreSQL, each test in a schema of its own. The writes come from another connection pool (as
another process's would); the listener must hear them, hear again after its connection is killed
(and catch up on what it missed), and the projection worker's loop must follow them with polling
switched off.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from application.bootstrap import build_applications, migrate
from application.services import follow_projections
from infrastructure.listen import EventsListener
from projections.catalog import ALL_PROJECTIONS
from projections.consultation_detail import ConsultationDetail, consultation_key
from projections.memory_store import MemoryViewStore
from projections.runner import ProjectionRunner
from tests import services
from tests.conftest import settings_for

START = datetime(2027, 1, 4, 9, tzinfo=UTC)


@pytest.fixture
def apps(tmp_path, request):
    settings = settings_for("postgres", tmp_path, request)
    migrate(settings)
    built = build_applications(settings, create_table=False)
    yield built
    for app in built.values():
        app.close()


@pytest.fixture
def writer(tmp_path, request, apps):
    """The same stores through other connections: what another process would record."""
    other = build_applications(settings_for("postgres", tmp_path, request), create_table=False)
    yield other["Consultations"]
    for app in other.values():
        app.close()


def request_one(consultations) -> uuid.UUID:
    return consultations.request_consultation(uuid.uuid4(), uuid.uuid4(), START, "check-up")


async def until(condition, seconds: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds}s: {what}"
        await asyncio.sleep(0.005)


def test_a_listener_hears_what_another_connection_records_and_catches_up_after_reconnecting(apps, writer):
    listener = EventsListener.for_apps(apps)
    listener.connection["application_name"] = name = f"test-listener-{uuid.uuid4().hex[:8]}"
    heard: list[float] = []
    listener.on_new_events("Consultations", lambda: heard.append(time.monotonic()))

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(listener.run(stop, first_retry=0.05))
        # once connected, it calls back once (whatever was recorded while nobody listened)
        await until(lambda: listener.listening and len(heard) == 1, what="listening")
        # when another connection records, it hears it at once
        await asyncio.to_thread(request_one, writer)
        await until(lambda: len(heard) == 2, what="the NOTIFY")
        # when its connection is killed, it connects again and calls back again
        killed = await asyncio.to_thread(kill, name)
        assert killed >= 1
        await until(lambda: len(heard) >= 3 and listener.listening, what="reconnected")
        before = len(heard)
        await asyncio.to_thread(request_one, writer)
        await until(lambda: len(heard) > before, what="the NOTIFY after reconnecting")
        stop.set()
        await task

    asyncio.run(scenario())


def test_the_projection_worker_follows_another_process_with_polling_off(apps, writer):
    store = MemoryViewStore()
    runner = ProjectionRunner(apps, store, ALL_PROJECTIONS)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(follow_projections(runner, apps, stop, poll_seconds=3600))
        await until(lambda: runner.status()["consultation_detail"].lag == 0, what="caught up")
        consultation_id = await asyncio.to_thread(request_one, writer)
        recorded = time.monotonic()
        await until(lambda: store.get_fields("consultation_detail", ConsultationDetail.version,
                                             consultation_key(consultation_id)) != {}, what="the view")
        assert time.monotonic() - recorded < 2.0
        stop.set()
        await task

    asyncio.run(scenario())


def kill(application_name: str) -> int:
    """Terminate the backends connected as ``application_name`` (this test's listener)."""
    with psycopg.connect(host=services.POSTGRES_HOST, port=services.POSTGRES_PORT, dbname=services.POSTGRES_DB,
                         user=services.POSTGRES_USER, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,)).fetchall()
    return len(rows)
