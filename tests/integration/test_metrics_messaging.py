"""Messaging metrics on a real RabbitMQ: published, consumed, acked, retried, dead-lettered, queue depth."""

from __future__ import annotations

import asyncio

import pytest

from infrastructure.messaging.consumer import FollowerConsumer
from infrastructure.messaging.relay import OutboxRelay
from infrastructure.observability.metrics import Metrics
from infrastructure.observability.queue_depth import QueueDepthSampler
from tests.integration.messaging.conftest import (  # noqa: F401 - fixtures
    MemoryPosition,
    anyio_backend,
    booking,
    broker,
    consultations,
    rabbitmq_vhost,
    request_consultations,
    settings,
)
from tests.kit.eventually import eventually_async

pytestmark = pytest.mark.anyio


@pytest.fixture
def metrics() -> Metrics:
    return Metrics("test")


async def test_every_outcome_of_a_message_is_counted_by_follower(broker, consultations, booking, metrics):
    queues = await broker.declare("Booking", "Consultations")
    relay = OutboxRelay(consultations, await broker.channel(), broker.topology.exchange, MemoryPosition(),
                        metrics=metrics)
    consumer = FollowerConsumer(booking, await broker.channel(), queues, prefetch=4, max_attempts=3,
                                metrics=metrics)
    # before any message, every series exists at zero
    assert metrics.sample("clinic_amqp_published_total", application="consultations") == 0
    assert metrics.sample("clinic_amqp_retried_total", follower="booking", level="2") == 0
    await consumer.start()
    try:
        _ok, retried_once, poisoned = request_consultations(consultations, 3)
        booking.failures[retried_once] = 1
        booking.failures[poisoned] = None  # fails every time: 2 retries, then the DLQ

        assert await relay.run_once() == 3
        await eventually_async(lambda: sum(consumer.outcomes.values()) == 1 + 2 + 3, what="six deliveries settled")

        assert metrics.sample("clinic_amqp_published_total", application="consultations") == 3
        assert metrics.sample("clinic_amqp_consumed_total", follower="booking") == 6
        assert metrics.sample("clinic_amqp_acked_total", follower="booking") == 2
        assert metrics.sample("clinic_amqp_retried_total", follower="booking", level="1") == 2
        assert metrics.sample("clinic_amqp_retried_total", follower="booking", level="2") == 1
        assert metrics.sample("clinic_amqp_dead_lettered_total", follower="booking") == 1
    finally:
        await consumer.stop()


async def test_queue_depths_are_measured_by_a_passive_declare(broker, consultations, metrics):
    queues = await broker.declare("Booking", "Consultations")
    relay = OutboxRelay(consultations, await broker.channel(), broker.topology.exchange, MemoryPosition())
    request_consultations(consultations, 2)
    await relay.run_once()
    await eventually_async(lambda: broker.count(queues.main), what="published")  # nobody consumes: they wait
    missing = f"{queues.main}.missing"
    sampler = QueueDepthSampler(metrics, [queues.main, queues.dead_letters])

    assert await sampler.measure(broker.connection) == {queues.main: 2, queues.dead_letters: 0}
    assert metrics.sample("clinic_amqp_queue_depth", queue=queues.main) == 2
    assert metrics.sample("clinic_amqp_queue_depth", queue=queues.dead_letters) == 0

    # a queue that does not exist closes the sampler's channel; run() logs it and measures again later
    broken = QueueDepthSampler(metrics, [missing], interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(broken.run(lambda: broker.connection, stop))
    await eventually_async(lambda: broken._channel is None or broken._channel.is_closed, what="channel closed")
    broken.queues = (queues.main,)
    await broker.drain(queues.main)
    await eventually_async(lambda: metrics.sample("clinic_amqp_queue_depth", queue=queues.main) == 0, what="re-measured")
    stop.set()
    await task
