"""A follower whose event store is out holds its messages: no retry is counted, nothing is dead-lettered,
and once the store is back every message is processed exactly once.

The leader (consultations) keeps its log in SQLite and publishes through its relay; the follower
(booking) keeps its events in a PostgreSQL of the test's own, which the test stops while messages wait.
"""

from __future__ import annotations

import asyncio

import pytest

from application.consultations import ConsultationsApplication
from application.settings import Settings
from infrastructure.messaging.consumer import FollowerConsumer
from infrastructure.messaging.relay import OutboxRelay
from process_managers.booking import BookingProcessManager
from tests.integration.messaging.conftest import request_consultations
from tests.kit import FakeRegistry, eventually_async
from tests.private_servers import PrivatePostgres, private_postgres  # noqa: F401 - fixture

pytestmark = pytest.mark.anyio
MESSAGES = 6


@pytest.fixture
def booking_on_private_postgres(private_postgres: PrivatePostgres):  # noqa: F811 - the fixture
    settings = Settings(persistence="postgres", database=private_postgres.env)
    app = BookingProcessManager(env=settings.eventsourcing_env(BookingProcessManager.name, create_table=True))
    app.registry = FakeRegistry()
    yield app
    app.close()


async def test_messages_wait_out_a_store_outage_without_burning_retries(
        broker, consultations: ConsultationsApplication, booking_on_private_postgres: BookingProcessManager,
        private_postgres: PrivatePostgres):  # noqa: F811 - the fixture
    booking = booking_on_private_postgres
    queues = await broker.declare(BookingProcessManager.name, ConsultationsApplication.name)
    stop = asyncio.Event()
    relay = asyncio.create_task(OutboxRelay(consultations, await broker.channel(), broker.topology.exchange,
                                            poll_interval=0.02).run(stop))
    consumer = FollowerConsumer(booking, await broker.channel(), queues, max_attempts=2)
    try:
        # given requests waiting in the follower's queue
        request_consultations(consultations, MESSAGES)
        await eventually_async(lambda: _counted(broker, queues.main, MESSAGES), timeout=20,
                               what="the requests published to the booking queue")
        # when the follower's store is out while it consumes them
        private_postgres.stop()
        await consumer.start()
        await eventually_async(lambda: consumer.store_outages >= 2, timeout=30,
                               what="the consumer finding the store out, twice")
        # then nothing is retried or dead-lettered meanwhile
        assert consumer.outcomes["retried"] == consumer.outcomes["dead_lettered"] == 0
        assert [await broker.count(q) for q in (*queues.retries, queues.dead_letters)] == [0] * (
            len(queues.retries) + 1)
        # and when the store is back, every message is processed once, and none went anywhere else
        private_postgres.start()
        await eventually_async(lambda: consumer.outcomes["processed"] == MESSAGES, timeout=60,
                               what=f"the {MESSAGES} requests processed after the outage ({consumer.outcomes})")
        assert set(consumer.outcomes) == {"processed"}
        assert [await broker.count(q) for q in (queues.main, *queues.retries, queues.dead_letters)] == [0] * (
            len(queues.retries) + 2)
    finally:
        stop.set()
        await relay
        await consumer.stop()


async def _counted(broker, queue: str, expected: int) -> bool:
    return await broker.count(queue) == expected
