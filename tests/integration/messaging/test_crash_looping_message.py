"""A message that kills its consumer every time is dead-lettered after the delivery limit, unprocessed.

Each round, the follower takes the message and dies on it: its processing hangs until the test closes
the consumer's channel, as a killed process's connection closes, so RabbitMQ redelivers it (classic
queues would do so for ever). The deliveries are counted in the follower's own PostgreSQL (a private
server: the count must survive the consumer), and once past the limit the next consumer dead-letters
the message with the reason ``delivery-limit`` without handing it to the follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest

from application.consultations import ConsultationsApplication
from application.settings import Settings
from infrastructure.messaging.attempts import PostgresDeliveryAttempts
from infrastructure.messaging.consumer import DEAD_LETTER_REASON, DELIVERY_LIMIT_REACHED, FollowerConsumer
from infrastructure.messaging.relay import OutboxRelay
from process_managers.booking import BookingProcessManager
from tests.integration.messaging.conftest import request_consultations
from tests.kit import FakeRegistry, eventually_async
from tests.private_servers import PrivatePostgres, private_postgres  # noqa: F401 - fixture

pytestmark = pytest.mark.anyio
LIMIT = 3


class DyingBooking(BookingProcessManager):
    """Booking whose processing of any batch never finishes: its process is killed meanwhile."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deliveries = 0
        self.entered = threading.Event()
        self.killed = threading.Event()

    def record_batch(self, jobs: Any, exact: bool = True) -> Any:
        self.deliveries += 1
        self.entered.set()
        self.killed.wait(30)
        raise RuntimeError("the process is gone: nothing recorded")


@pytest.fixture
def dying(private_postgres: PrivatePostgres):  # noqa: F811 - the fixture
    settings = Settings(persistence="postgres", database=private_postgres.env)
    app = DyingBooking(env=settings.eventsourcing_env(BookingProcessManager.name, create_table=True))
    app.registry = FakeRegistry()
    attempts = PostgresDeliveryAttempts.of(app)
    assert attempts is not None
    attempts.create_table()
    yield app, attempts
    app.killed.set()
    app.close()


async def test_a_message_that_kills_its_consumer_is_dead_lettered_after_the_delivery_limit(
        broker, consultations: ConsultationsApplication, dying):
    app, attempts = dying
    queues = await broker.declare(BookingProcessManager.name, ConsultationsApplication.name)
    stop = asyncio.Event()
    relay = asyncio.create_task(OutboxRelay(consultations, await broker.channel(), broker.topology.exchange,
                                            poll_interval=0.02).run(stop))
    try:
        # given one request in the follower's queue
        request_consultations(consultations, 1)
        await eventually_async(lambda: _counted(broker, queues.main, 1), timeout=20, what="the request published")
        # when a consumer dies on it, again and again
        for _ in range(LIMIT):
            consumer = FollowerConsumer(app, await broker.channel(), queues, attempts=attempts, delivery_limit=LIMIT)
            await consumer.start()
            await eventually_async(app.entered.is_set, timeout=20, what=f"delivery {app.deliveries + 1}")
            app.entered.clear()
            await consumer.channel.close()  # the process died: its connection, and the channel, are gone
            app.killed.set()
            with contextlib.suppress(Exception):
                await consumer.stop(timeout=5)
            app.killed = threading.Event()
        # then the next consumer dead-letters it unprocessed, with the reason, and forgets its count
        survivor = FollowerConsumer(app, await broker.channel(), queues, attempts=attempts, delivery_limit=LIMIT)
        await survivor.start()
        await eventually_async(lambda: survivor.outcomes["dead_lettered"] == 1, timeout=20,
                               what=f"the message dead-lettered ({survivor.outcomes})")
        await survivor.stop()
        assert app.deliveries == LIMIT
        [dead] = await broker.drain(queues.dead_letters)
        assert dead.header.properties.headers[DEAD_LETTER_REASON] == DELIVERY_LIMIT_REACHED
        assert await broker.count(queues.main) == 0
        assert attempts.count("nobody", []) == {}
        with app.recorder.datastore.transaction() as cursor:
            cursor.execute(f"SELECT count(*) AS n FROM {PostgresDeliveryAttempts.TABLE}")
            assert cursor.fetchone()["n"] == 0
    finally:
        stop.set()
        await relay


async def _counted(broker, queue: str, expected: int) -> bool:
    return await broker.count(queue) == expected


def test_a_batch_holding_one_message_twice_is_counted_once(dying):
    """A relay that republishes after a crash can put one message in a batch twice, one copy redelivered."""
    _, attempts = dying
    assert attempts.count("Booking", ["Consultations:7", "Consultations:7", "Consultations:8"]) == {
        "Consultations:7": 2, "Consultations:8": 2}
    assert attempts.count("Booking", ["Consultations:7"]) == {"Consultations:7": 3}
    attempts.forget("Booking", ["Consultations:7", "Consultations:7", "Consultations:8"])
    assert attempts.count("Booking", ["Consultations:7"]) == {"Consultations:7": 2}
