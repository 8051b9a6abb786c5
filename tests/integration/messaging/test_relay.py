"""The outbox relay against a real RabbitMQ: order, ids, headers, restarts, events no queue follows."""

from __future__ import annotations

import asyncio

import pytest

from application.consultations import ConsultationsApplication
from infrastructure.messaging.relay import OutboxRelay, TrackingPosition
from tests.integration.messaging.conftest import request_consultations
from tests.kit import eventually_async

pytestmark = pytest.mark.anyio


class CrashOnSave:
    """A position store that dies on its ``crash_on``-th save, as a process killed there would."""

    def __init__(self, inner: TrackingPosition, crash_on: int) -> None:
        self.inner, self.crash_on, self.saves = inner, crash_on, 0

    def get(self) -> int:
        return self.inner.get()

    def save(self, notification_id: int) -> None:
        self.saves += 1
        if self.saves == self.crash_on:
            raise SystemExit("killed between publish and save")
        self.inner.save(notification_id)


async def test_relay_publishes_every_notification_in_order_with_its_ids_and_headers(broker, consultations):
    # given five requests recorded and a queue bound to consultations
    ids = request_consultations(consultations, 5)
    spy = await broker.declare("Spy", "Consultations")
    relay = OutboxRelay(consultations, await broker.channel(), broker.topology.exchange)

    # when the relay runs
    published = await relay.run_once()

    # then every notification is on the queue, in order, named and described by its headers
    messages = await broker.drain(spy.main)
    notifications = consultations.recorder.select_notifications(0, 10)
    assert published == 5
    assert [m.header.properties.message_id for m in messages] == [f"Consultations:{n}" for n in range(1, 6)]
    for message, notification, consultation_id in zip(messages, notifications, ids, strict=True):
        p, h = message.header.properties, message.header.properties.headers
        assert message.routing_key == "consultations.Consultation.Requested"
        assert message.body == notification.state
        assert (p.delivery_mode, p.content_type, p.app_id, p.message_type) == \
            (2, "application/json", "Consultations", notification.topic)
        assert (h["application"], h["notification_id"], h["topic"]) == \
            ("Consultations", notification.id, notification.topic)
        assert (h["originator_id"], h["originator_version"]) == (str(consultation_id), 1)
        assert {"correlation_id", "causation_id", "saga_id"} <= h.keys()
        assert h["traceparent"] is None  # recorded outside any trace (tests/unit/infrastructure/test_tracing.py)
    assert await relay.run_once() == 0
    assert relay.position.get() == 5


async def test_a_restarted_relay_resumes_after_its_saved_position(broker, consultations, settings):
    # given seven notifications, and a relay killed after publishing its second batch, before saving
    request_consultations(consultations, 7)
    spy = await broker.declare("Spy", "Consultations")
    channel = await broker.channel()
    crashing = CrashOnSave(TrackingPosition(consultations), crash_on=2)
    relay = OutboxRelay(consultations, channel, broker.topology.exchange, crashing, batch_size=3)
    assert await relay.run_once() == 3
    with pytest.raises(SystemExit):
        await relay.run_once()

    # when the application and its relay start again from the same store
    consultations.close()
    restarted = ConsultationsApplication(env=settings.eventsourcing_env("Consultations"))
    relay = OutboxRelay(restarted, channel, broker.topology.exchange, batch_size=3)
    while await relay.run_once():
        pass

    # then nothing is missing, and only the unconfirmed batch was published twice
    ids = [m.header.properties.headers["notification_id"] for m in await broker.drain(spy.main)]
    assert ids == [1, 2, 3, 4, 5, 6, 4, 5, 6, 7]
    assert relay.position.get() == 7
    restarted.close()


async def test_an_event_no_queue_follows_is_passed_over_and_the_relay_goes_on(broker, consultations):
    # given an exchange to which no queue for consultations' events is bound
    request_consultations(consultations, 2)
    await broker.declare("Spy", "Scheduling")
    relay = OutboxRelay(consultations, await broker.channel(), broker.topology.exchange)

    # when the relay publishes, the broker returns them as unroutable (no context follows them)
    published = await relay.run_once()

    # then they count as relayed: the position moves on, nothing blocks what comes next
    assert (published, relay.position.get()) == (2, 2)


async def test_the_running_relay_publishes_what_is_recorded_while_it_runs_until_stopped(broker, consultations):
    # given a relay running, polling often
    spy = await broker.declare("Spy", "Consultations")
    relay = OutboxRelay(consultations, await broker.channel(), broker.topology.exchange, poll_interval=0.02)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))

    # when requests are recorded while it runs
    request_consultations(consultations, 2)
    await eventually_async(lambda: relay.position.get() == 2, what="relay caught up")
    request_consultations(consultations, 1)
    await eventually_async(lambda: relay.position.get() == 3, what="relay caught up again")

    # then it published them all, and stops when asked
    stop.set()
    await asyncio.wait_for(running, timeout=5)
    assert [m.header.properties.message_id for m in await broker.drain(spy.main)] == \
        ["Consultations:1", "Consultations:2", "Consultations:3"]
