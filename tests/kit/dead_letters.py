"""Followers' queues on the real RabbitMQ under a prefix of their own, for tests of what reads dead letters
(the console): declared as the services declare them, poison put where the consumer puts it, removed after."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from uuid import uuid4

import aiormq
from pamqp.commands import Basic

from application.bootstrap import SYSTEM
from application.contexts import BY_SERVICE, CONTEXTS
from infrastructure.messaging.consumer import ATTEMPTS, DEAD_LETTER_REASON, ERROR, ORIGINAL_ROUTING_KEY
from infrastructure.messaging.dlq import DeadLetterDesk
from infrastructure.messaging.topology import Topology, declare_system
from tests import services


@dataclass
class Followers:
    """The followers' queues under ``topology``'s prefix, and a desk that reads their dead letters."""

    url: str
    topology: Topology

    def desk(self) -> DeadLetterDesk:
        return DeadLetterDesk(lambda: aiormq.connect(self.url),
                              {c.service: self.topology.queues(c.name) for c in CONTEXTS if c.follows})

    def poison(self, follower: str, message_id: str, body: bytes = b"not an event") -> None:
        """A message ``follower``'s consumer gave up on, in its DLQ with the headers it writes."""
        queue = self.topology.queues(BY_SERVICE[follower].name).dead_letters
        headers = {DEAD_LETTER_REASON: "unreadable", ERROR: "ValueError: not an event", ATTEMPTS: 1,
                   ORIGINAL_ROUTING_KEY: "consultations.Consultation.Requested"}
        asyncio.run(self._publish(queue, body, Basic.Properties(message_id=message_id, headers=headers,
                                                                delivery_mode=2)))

    def depth(self, follower: str, dead: bool = False) -> int:
        """Messages ready in the follower's queue (or its DLQ)."""
        queues = self.topology.queues(BY_SERVICE[follower].name)
        return asyncio.run(self._depth(queues.dead_letters if dead else queues.main))

    async def _publish(self, queue: str, body: bytes, properties: Basic.Properties) -> None:
        connection = await aiormq.connect(self.url)
        channel = await connection.channel(publisher_confirms=True)
        await channel.basic_publish(body, routing_key=queue, properties=properties, mandatory=True)
        await connection.close()

    async def _depth(self, queue: str) -> int:
        connection = await aiormq.connect(self.url)
        channel = await connection.channel()
        declared = await channel.queue_declare(queue, passive=True)
        await connection.close()
        return declared.message_count or 0


@contextmanager
def followers_on_the_broker() -> Iterator[Followers]:
    """Every follower's queues (main, retries, DLQ) under a fresh prefix on the default vhost; deleted after."""
    services.require_rabbitmq()
    url = (f"amqp://{services.RABBITMQ_USER}:{services.RABBITMQ_PASSWORD}@{services.RABBITMQ_HOST}:"
           f"{services.RABBITMQ_PORT}/")
    followers = Followers(url, Topology(prefix=f"dl{uuid4().hex[:10]}"))
    declared = asyncio.run(_declare(followers))
    try:
        yield followers
    finally:
        asyncio.run(_delete(followers, declared))


async def _declare(followers: Followers) -> list[str]:
    connection = await aiormq.connect(followers.url)
    channel = await connection.channel()
    queues = await declare_system(channel, followers.topology, SYSTEM.edges)
    await connection.close()
    return [name for q in queues.values() for name in (q.main, *q.retries, q.dead_letters)]


async def _delete(followers: Followers, queues: list[str]) -> None:
    connection = await aiormq.connect(followers.url)
    channel = await connection.channel()
    for queue in queues:
        await channel.queue_delete(queue)
    await channel.exchange_delete(followers.topology.exchange)
    await connection.close()
