"""The declared topology routes as documented: bindings, retry queues back to the queue."""

from __future__ import annotations

import pytest
from aiormq.abc import Basic

from infrastructure.messaging.topology import declare_system
from tests.integration.messaging.conftest import eventually

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

    await eventually(lambda: _count_is(broker, queues.main, 2), what="both back in the follower's queue")
    assert sorted(m.body.decode() for m in await broker.drain(queues.main)) == sorted(queues.retries)


async def _count_is(broker, queue, expected) -> bool:
    return await broker.count(queue) == expected
