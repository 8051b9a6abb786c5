"""The whole booking saga with the contexts linked only by RabbitMQ (no embedded runner).

Each context's relay publishes its notification log; each follower consumes its own
queue; the saga runs consultations → booking → scheduling → booking → consultations.
The queues are bound as the workers bind them: only to the events each follower handles.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from application.bootstrap import SUBSCRIPTIONS, SYSTEM, build_applications
from domain.metadata import event_metadata
from infrastructure.messaging.consumer import FollowerConsumer
from infrastructure.messaging.relay import OutboxRelay
from infrastructure.messaging.topology import declare_system
from process_managers.booking_saga import saga_id_for
from tests.integration.messaging.conftest import START
from tests.kit import FakeRegistry, eventually_async

pytestmark = pytest.mark.anyio


@pytest.fixture
async def distributed(broker, settings):
    """Every context with its relay and consumer running; returns the applications."""
    apps = build_applications(settings)
    apps["Booking"].registry = FakeRegistry()
    queues = await declare_system(await broker.channel(), broker.topology, SYSTEM.edges, SUBSCRIPTIONS)
    broker.followers.extend(queues.values())
    consumers = [FollowerConsumer(apps[name], await broker.channel(), q) for name, q in queues.items()]
    for consumer in consumers:
        await consumer.start()
    stop = asyncio.Event()
    relays = [asyncio.create_task(OutboxRelay(apps[name], await broker.channel(), broker.topology.exchange,
                                              poll_interval=0.02).run(stop)) for name in SYSTEM.leaders]
    yield apps
    stop.set()
    await asyncio.gather(*relays)
    for consumer in consumers:
        await consumer.stop()
    for app in apps.values():
        app.close()


async def test_a_booking_is_confirmed_across_the_broker_with_one_correlation_id(distributed):
    consultations, scheduling = distributed["Consultations"], distributed["Scheduling"]
    # given an open slot
    doctor_id = uuid.uuid4()
    [slot_id] = scheduling.open_slots(doctor_id, [(START, 30)])

    # when a patient requests it
    with event_metadata(correlation_id="corr-amqp"):
        consultation_id = consultations.request_consultation(uuid.uuid4(), doctor_id, START, "checkup")

    # then the saga runs over RabbitMQ: the slot is booked and the consultation confirmed
    await eventually_async(lambda: consultations.consultation(consultation_id).status == "CONFIRMED",
                     timeout=20, what="consultation confirmed")
    assert scheduling.slot(slot_id).status == "BOOKED"
    # and every event of the booking, in every context, carries the request's correlation id
    events = [*consultations.events.get(consultation_id),
              *distributed["Booking"].events.get(saga_id_for(consultation_id)),
              *list(scheduling.events.get(slot_id))[1:]]  # the slot's Opened came before the request
    assert len(events) >= 6
    assert {e.correlation_id for e in events} == {"corr-amqp"}


async def test_a_refused_booking_and_a_cancellation_compensate_across_the_broker(distributed):
    consultations, scheduling = distributed["Consultations"], distributed["Scheduling"]
    # given a slot booked by one patient
    doctor_id = uuid.uuid4()
    [slot_id] = scheduling.open_slots(doctor_id, [(START, 30)])
    first = consultations.request_consultation(uuid.uuid4(), doctor_id, START, "checkup")
    await eventually_async(lambda: consultations.consultation(first).status == "CONFIRMED", timeout=20,
                     what="first booking confirmed")

    # when another patient requests the same slot, then the first one cancels
    second = consultations.request_consultation(uuid.uuid4(), doctor_id, START, "checkup")
    await eventually_async(lambda: consultations.consultation(second).status == "REJECTED", timeout=20,
                     what="second booking rejected (slot refused)")
    consultations.cancel(first, "moved away", by_patient=True)

    # then the saga releases the slot: the refusal and the cancellation reached their followers
    await eventually_async(lambda: scheduling.slot(slot_id).status == "OPEN", timeout=20, what="slot released")
    assert consultations.consultation(first).status == "CANCELLED"
