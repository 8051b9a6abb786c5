"""A follower's queue split into partitions (several workers per context), on a real RabbitMQ.

Each message goes by its ``x-ordering-key`` (a saga, else an aggregate) through the follower's
consistent-hash exchange to one partition, so one saga's events stay together and in order; a retry
and a re-driven dead letter come back to the same partition; each partition has one active consumer
at a time, and the next one takes over when it goes.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from urllib.parse import quote

import pytest
from aiormq.abc import Basic

from infrastructure.messaging.consumer import FollowerConsumer
from infrastructure.messaging.dlq import DeadLetterQueue
from infrastructure.messaging.relay import OutboxRelay
from infrastructure.messaging.topology import ORDERING_KEY
from process_managers.booking_saga import saga_id_for
from tests import services
from tests.integration.messaging.conftest import MemoryPosition, request_consultations
from tests.kit import eventually_async

pytestmark = pytest.mark.anyio
PARTITIONS = 4


@pytest.fixture
def partitioned(broker):
    broker.topology = dataclasses.replace(broker.topology, partitions=PARTITIONS)
    return broker


async def publish(broker, key: str, sequence: int) -> None:
    channel = await broker.channel()
    await channel.basic_publish(f"{key}:{sequence}".encode(), exchange=broker.topology.exchange,
                                routing_key="consultations.Consultation.Requested",
                                properties=Basic.Properties(headers={ORDERING_KEY: key}, delivery_mode=2))
    await channel.close()


async def drained(broker, queues) -> dict[str, list[str]]:
    return {queue: [bytes(m.body).decode() for m in await broker.drain(queue)] for queue in queues.partitions}


async def test_each_key_s_messages_land_together_and_in_order_in_one_partition(partitioned):
    queues = await partitioned.declare("Booking", "Consultations")
    keys = [str(uuid.uuid4()) for _ in range(12)]
    for sequence in range(4):
        for key in keys:
            await publish(partitioned, key, sequence)
    await eventually_async(lambda: _total(partitioned, queues, 48), what="48 messages routed")
    by_partition = await drained(partitioned, queues)
    where = {}
    for partition, bodies in by_partition.items():
        for body in bodies:
            key, sequence = body.rsplit(":", 1)
            assert where.setdefault(key, partition) == partition  # one partition per key
    for key in keys:
        assert [b.rsplit(":", 1)[1] for b in by_partition[where[key]] if b.startswith(key)] == ["0", "1", "2", "3"]
    assert len({p for p, bodies in by_partition.items() if bodies}) > 1  # the keys spread over the partitions


async def _total(broker, queues, expected: int) -> bool:
    counts = [await broker.count(queue) for queue in queues.partitions]
    return sum(counts) == expected


async def test_a_retry_and_a_redriven_dead_letter_come_back_to_their_partition(partitioned, consultations, booking):
    queues = await partitioned.declare("Booking", "Consultations")
    [consultation_id] = request_consultations(consultations, 1)
    booking.failures[consultation_id] = None  # always fails: retried, then dead-lettered
    consumer = FollowerConsumer(booking, await partitioned.channel(), queues, max_attempts=2)
    seen: list[str] = []
    original = consumer._on_message

    async def noting(message):
        seen.append(consumer.queue_of(message.delivery.consumer_tag))  # the partition it came from
        await original(message)

    consumer._on_message = noting
    await consumer.start()
    await OutboxRelay(consultations, await partitioned.channel(), partitioned.topology.exchange, MemoryPosition()).run_once()
    await eventually_async(lambda: consumer.outcomes["dead_lettered"] == 1, what="dead-lettered after a retry")
    [letter] = await DeadLetterQueue(partitioned.connection, queues).list_messages()
    assert letter.headers[ORDERING_KEY] == str(consultation_id)
    booking.failures[consultation_id] = 0
    assert await DeadLetterQueue(partitioned.connection, queues).redrive_all() == 1
    await eventually_async(lambda: saga_id_for(consultation_id) in booking.repository, what="processed after the re-drive")
    await consumer.stop()
    assert len(seen) == 3 and len(set(seen)) == 1  # first delivery, retry, re-drive: one partition


async def test_clinic_dlq_redrives_through_the_follower_s_exchange_to_the_letter_s_partition(partitioned,
                                                                                         rabbitmq_vhost):
    queues = await partitioned.declare("Booking", "Consultations")
    channel = await partitioned.channel()
    key = str(uuid.uuid4())
    await channel.basic_publish(b"an event", routing_key=queues.dead_letters, properties=Basic.Properties(
        message_id="letter-1", headers={ORDERING_KEY: key}, delivery_mode=2))
    env = {**os.environ, "CLINIC_AMQP_PREFIX": partitioned.topology.prefix, "CLINIC_PARTITIONS": str(PARTITIONS),
           "CLINIC_AMQP_URL": f"amqp://{services.RABBITMQ_USER}:{services.RABBITMQ_PASSWORD}@"
                              f"{services.RABBITMQ_HOST}:{services.RABBITMQ_PORT}/{quote(rabbitmq_vhost, safe='')}"}
    done = subprocess.run([sys.executable, "-m", "interfaces.cli.main", "dlq", "redrive", "booking", "--all"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "re-drove 1 message(s)" in done.stdout, done.stdout + done.stderr
    await eventually_async(lambda: _total(partitioned, queues, 1), what="the letter in a partition")
    assert await partitioned.count(queues.dead_letters) == 0


async def test_each_partition_has_one_active_consumer_and_the_next_takes_over(partitioned, consultations, booking):
    queues = await partitioned.declare("Booking", "Consultations")
    first = FollowerConsumer(booking, await partitioned.channel(), queues)
    second = FollowerConsumer(booking, await partitioned.channel(), queues)
    await first.start()
    await second.start()  # stands by on every partition: the first registered first
    request_consultations(consultations, 8)
    relay = OutboxRelay(consultations, await partitioned.channel(), partitioned.topology.exchange, MemoryPosition())
    await relay.run_once()
    await eventually_async(lambda: first.outcomes["processed"] == 8, what="all taken by the active consumer")
    assert second.outcomes["processed"] == 0
    await first.stop()
    request_consultations(consultations, 8)
    await relay.run_once()
    await eventually_async(lambda: second.outcomes["processed"] == 8, what="taken over by the one standing by")
    await second.stop()


async def test_a_worker_registers_first_on_its_own_partitions(partitioned, consultations, booking):
    queues = await partitioned.declare("Booking", "Consultations")
    mine = set(queues.partitions[0::2])
    early = FollowerConsumer(booking, await partitioned.channel(), queues)
    late = FollowerConsumer(booking, await partitioned.channel(), queues)
    await early.start(preferred=mine, standby_delay=0.3)
    await late.start(preferred=set(queues.partitions) - mine, standby_delay=0.3)  # both on their own first
    request_consultations(consultations, 24)
    await OutboxRelay(consultations, await partitioned.channel(), partitioned.topology.exchange,
                      MemoryPosition()).run_once()
    await eventually_async(lambda: early.outcomes["processed"] + late.outcomes["processed"] == 24, what="all processed")
    assert early.outcomes["processed"] > 0 and late.outcomes["processed"] > 0  # shared
    await early.stop()
    await late.stop()
