"""The booking process manager fed through RabbitMQ: relay → exchange → queue → deliver.

Each test records consultation requests in a real consultations store (SQLite),
relays them to a real exchange, and lets a ``FollowerConsumer`` drive a real
booking process manager (made to fail on chosen consultations where a test needs it).
"""

from __future__ import annotations

import asyncio

import pytest
from aiormq.abc import Basic
from eventsourcing.persistence import Tracking

from infrastructure.messaging.consumer import FollowerConsumer
from infrastructure.messaging.dlq import DeadLetterQueue
from infrastructure.messaging.relay import OutboxRelay
from process_managers.booking_saga import BookingSaga, saga_id_for
from process_managers.delivery import processed_among
from tests.integration.messaging.conftest import MemoryPosition, request_consultations
from tests.kit import eventually_async

pytestmark = pytest.mark.anyio


@pytest.fixture
async def wired(broker, consultations, booking):
    """The booking queue declared and consumed; returns (relay, consumer, queues)."""
    queues = await broker.declare("Booking", "Consultations")
    relay = OutboxRelay(consultations, await broker.channel(), broker.topology.exchange, MemoryPosition())
    consumer = FollowerConsumer(booking, await broker.channel(), queues, prefetch=4, max_attempts=3)
    await consumer.start()
    yield relay, consumer, queues
    await consumer.stop()


def has_saga(booking, consultation_id) -> bool:
    return saga_id_for(consultation_id) in booking.repository


def saga_event_count(booking, consultation_id) -> int:
    return len(list(booking.events.get(saga_id_for(consultation_id))))


async def test_a_requested_consultation_starts_a_saga_through_the_broker(wired, booking):
    relay, consumer, _ = wired
    # given a consultation requested
    [consultation_id] = request_consultations(relay.app, 1)

    # when the relay publishes it
    await relay.run_once()

    # then the booking process manager starts its saga and tracks the notification
    await eventually_async(lambda: consumer.outcomes["processed"] == 1, what="processed")
    saga = booking.repository.get(saga_id_for(consultation_id))
    assert isinstance(saga, BookingSaga)
    assert saga.consultation_id == consultation_id
    assert processed_among(booking, [Tracking("Consultations", 1)]) == {("Consultations", 1)}


async def test_the_same_message_published_twice_has_one_effect(wired, booking, broker):
    relay, consumer, _ = wired
    [consultation_id] = request_consultations(relay.app, 1)

    # when two relays (one forgot its position) publish the same notification
    await relay.run_once()
    await OutboxRelay(relay.app, await broker.channel(), broker.topology.exchange, MemoryPosition()).run_once()

    # then it is processed once and acknowledged as a duplicate once
    await eventually_async(lambda: consumer.outcomes["processed"] + consumer.outcomes["duplicate"] == 2)
    assert (consumer.outcomes["processed"], consumer.outcomes["duplicate"]) == (1, 1)
    assert saga_event_count(booking, consultation_id) == 1


async def test_a_handler_failing_twice_goes_through_the_retry_queues_and_is_processed_once(wired, booking):
    relay, consumer, _ = wired
    # given the saga fails twice on the first consultation
    first, second = request_consultations(relay.app, 2)
    booking.failures[first] = 2

    # when both are published
    await relay.run_once()

    # then the second is not held up, and the first succeeds on its third attempt, once
    await eventually_async(lambda: has_saga(booking, first) and has_saga(booking, second), what="both sagas")
    assert booking.attempts[first] == 3
    assert consumer.outcomes["retried"] == 2
    assert saga_event_count(booking, first) == 1


async def test_a_message_that_always_fails_ends_in_the_dlq_and_the_rest_flows(wired, booking, broker):
    relay, consumer, queues = wired
    # given the saga always fails on the first of three consultations
    first, *others = request_consultations(relay.app, 3)
    booking.failures[first] = None

    # when they are published
    await relay.run_once()

    # then the others are processed and the first is dead-lettered after max_attempts
    await eventually_async(lambda: consumer.outcomes["dead_lettered"] == 1, what="dead-lettered")
    assert all(has_saga(booking, other) for other in others)
    assert not has_saga(booking, first)
    [dead] = await DeadLetterQueue(broker.connection, queues).list_messages()
    assert (dead.message_id, dead.reason, dead.attempts) == ("Consultations:1", "max-attempts", 3)
    assert dead.error == f"RuntimeError: simulated failure on {first}"
    assert dead.headers["notification_id"] == 1
    assert dead.routing_key == "consultations.Consultation.Requested"


async def test_a_poison_message_goes_straight_to_the_dlq_and_the_rest_flows(wired, booking, broker):
    relay, consumer, queues = wired
    # given garbage published straight to the exchange, then a real request
    channel = await broker.channel()
    garbage = Basic.Properties(message_id="garbage:1", headers={"application": "Consultations"})
    await channel.basic_publish(b"\x00not json", exchange=broker.topology.exchange,
                                routing_key="consultations.Consultation.Requested", properties=garbage)
    [consultation_id] = request_consultations(relay.app, 1)
    await relay.run_once()

    # then the request is processed, and the garbage dead-lettered on its first attempt, with why
    await eventually_async(lambda: has_saga(booking, consultation_id), what="saga")
    await eventually_async(lambda: consumer.outcomes["dead_lettered"] == 1, what="dead-lettered")
    [dead] = await DeadLetterQueue(broker.connection, queues).list_messages()
    assert (dead.message_id, dead.reason, dead.attempts) == ("garbage:1", "poison", 1)
    assert dead.error.startswith("PoisonMessageError: missing headers: notification_id")
    assert dead.body == b"\x00not json"


async def test_stopping_lets_the_message_in_flight_finish_and_ack(broker, consultations, booking):
    # given a message held in flight by the process manager
    queues = await broker.declare("Booking", "Consultations")
    consumer = FollowerConsumer(booking, await broker.channel(), queues)
    await consumer.start()
    booking.gate.clear()
    [consultation_id] = request_consultations(consultations, 1)
    await OutboxRelay(consultations, await broker.channel(), broker.topology.exchange).run_once()
    await eventually_async(lambda: booking.attempts.get(consultation_id), what="processing started")

    # when the consumer is asked to stop
    stopping = asyncio.create_task(consumer.stop())
    await eventually_async(lambda: consumer.consuming is False, what="basic_cancel done")

    # then it waits for the message, which then finishes and is acked (nothing returns to the queue)
    assert not stopping.done()
    booking.gate.set()
    await stopping
    assert has_saga(booking, consultation_id)
    assert consumer.outcomes["processed"] == 1
    assert await broker.count(queues.main) == 0


async def test_a_failing_message_that_cannot_be_copied_for_retry_is_dead_lettered_by_the_broker(
        wired, booking, broker):
    relay, consumer, queues = wired
    # given the first retry queue deleted by mistake, and a request the saga fails on
    channel = await broker.channel()
    await channel.queue_delete(queues.retries[0])
    first, second = request_consultations(relay.app, 2)
    booking.failures[first] = None

    # when both are published
    await relay.run_once()

    # then the failing one is rejected into the DLQ by the queue's own dead-lettering, the other flows
    await eventually_async(lambda: consumer.outcomes["rejected"] == 1, what="rejected")
    await eventually_async(lambda: has_saga(booking, second), what="second saga")
    [dead] = await DeadLetterQueue(broker.connection, queues).list_messages()
    assert (dead.message_id, dead.reason) == ("Consultations:1", "rejected")
