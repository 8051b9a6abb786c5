"""The declared topology routes as documented: bindings, retry queues back to the queue."""

from __future__ import annotations

import pytest
from aiormq.abc import Basic

from application.bootstrap import SUBSCRIPTIONS, SYSTEM
from infrastructure.messaging.topology import declare_system
from tests.kit import eventually_async

pytestmark = pytest.mark.anyio

EDGES = [("Consultations", "Booking"), ("Booking", "Consultations"),
         ("Scheduling", "Booking"), ("Booking", "Scheduling")]


async def test_each_follower_receives_the_events_of_the_leaders_it_follows_only(broker):
    # given the system's topology declared
    channel = await broker.channel()
    queues = await declare_system(channel, broker.topology, EDGES)
    broker.followers.extend(queues.values())

    # when one event of each leader is published
    for key in ("consultations.Consultation.Requested", "scheduling.Slot.Held", "booking.BookingSaga.Started"):
        await channel.basic_publish(key.encode(), exchange=broker.topology.exchange, routing_key=key,
                                    mandatory=True)

    # then each reaches the followers of its leader
    def bodies(messages):
        return sorted(m.body.decode() for m in messages)

    assert bodies(await broker.drain(queues["Booking"].main)) == \
        ["consultations.Consultation.Requested", "scheduling.Slot.Held"]
    assert bodies(await broker.drain(queues["Consultations"].main)) == ["booking.BookingSaga.Started"]
    assert bodies(await broker.drain(queues["Scheduling"].main)) == ["booking.BookingSaga.Started"]


HANDLED = ("consultations.Consultation.Requested", "scheduling.Slot.Held", "booking.BookingSaga.Started")
IGNORED = ("consultations.Consultation.Confirmed", "scheduling.Slot.Opened", "booking.BookingSaga.SlotHeld")


async def publish(channel, broker, keys) -> None:
    for key in keys:  # not mandatory: an ignored event has no queue, and the broker drops it
        await channel.basic_publish(key.encode(), exchange=broker.topology.exchange, routing_key=key)


def bodies(messages) -> list[str]:
    return sorted(m.body.decode() for m in messages)


async def test_with_subscriptions_a_follower_receives_only_the_events_it_handles(broker):
    # given the system declared as the workers declare it (CLINIC_AMQP_BINDINGS=handled)
    channel = await broker.channel()
    queues = await declare_system(channel, broker.topology, SYSTEM.edges, SUBSCRIPTIONS)
    broker.followers.extend(queues.values())

    # when events each follower handles and events none handles are published
    await publish(channel, broker, HANDLED + IGNORED)

    # then only the handled ones are queued
    assert bodies(await broker.drain(queues["Booking"].main)) == \
        ["consultations.Consultation.Requested", "scheduling.Slot.Held"]
    assert bodies(await broker.drain(queues["Consultations"].main)) == []
    assert bodies(await broker.drain(queues["Scheduling"].main)) == ["booking.BookingSaga.Started"]


async def test_switching_bindings_either_way_needs_no_manual_step(broker):
    channel = await broker.channel()
    # given queues of an earlier version, bound to every event of their leaders
    queues = await declare_system(channel, broker.topology, SYSTEM.edges)
    broker.followers.extend(queues.values())

    # when declared again with subscriptions: the catch-all bindings are removed
    await declare_system(channel, broker.topology, SYSTEM.edges, SUBSCRIPTIONS)
    await publish(channel, broker, HANDLED + IGNORED)
    assert bodies(await broker.drain(queues["Booking"].main)) == \
        ["consultations.Consultation.Requested", "scheduling.Slot.Held"]

    # and declared back without them (CLINIC_AMQP_BINDINGS=all): every event, each once
    await declare_system(channel, broker.topology, SYSTEM.edges)
    await publish(channel, broker, HANDLED + IGNORED)
    assert bodies(await broker.drain(queues["Booking"].main)) == sorted(
        ["consultations.Consultation.Requested", "scheduling.Slot.Held", "consultations.Consultation.Confirmed",
         "scheduling.Slot.Opened"])


async def test_declaring_again_is_harmless(broker):
    channel = await broker.channel()
    first = await declare_system(channel, broker.topology, EDGES)
    again = await declare_system(channel, broker.topology, EDGES)
    broker.followers.extend(first.values())
    assert first == again


async def test_a_retry_queue_hands_its_message_back_to_the_follower_queue_after_its_delay(broker):
    queues = await broker.declare("Booking", "Consultations")
    channel = await broker.channel()
    for retry_queue in queues.retries:
        await channel.basic_publish(retry_queue.encode(), routing_key=retry_queue, mandatory=True,
                                    properties=Basic.Properties(delivery_mode=2))

    await eventually_async(lambda: _count_is(broker, queues.main, 2), what="both back in the follower's queue")
    assert sorted(m.body.decode() for m in await broker.drain(queues.main)) == sorted(queues.retries)


async def _count_is(broker, queue, expected) -> bool:
    return await broker.count(queue) == expected
