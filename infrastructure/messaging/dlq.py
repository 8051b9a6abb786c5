"""Operator actions on one follower's dead-letter queue: list, show, redrive, purge.

Each action uses its own channel. Reading takes messages without acking them and
hands them all back at the end with one ``nack(multiple, requeue)``, so nothing is
lost (a crash mid-way closes the channel, which requeues them too) and RabbitMQ puts
them back in their original order. Only messages present when the action starts are
looked at, so it ends even while new dead letters arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from aiormq.exceptions import ChannelNotFoundEntity
from pamqp.commands import Basic

from infrastructure.messaging.consumer import (
    ATTEMPT,
    ATTEMPTS,
    DEAD_LETTER_REASON,
    ERROR,
    ORIGINAL_ROUTING_KEY,
    delivery_tag,
    with_headers,
)
from infrastructure.messaging.headers import integer, text
from infrastructure.messaging.topology import FollowerQueues

REDRIVES = "x-redrives"
_RESET_ON_REDRIVE = (ATTEMPT, ATTEMPTS, ERROR, DEAD_LETTER_REASON, "x-death", "x-first-death-exchange",
                     "x-first-death-queue", "x-first-death-reason")


class DeadLetterNotFoundError(LookupError):
    """No message with this id is in the dead-letter queue."""


@dataclass(frozen=True)
class DeadLetter:
    """A message in a DLQ: why it is there, and all it carried."""

    message_id: str | None
    reason: str | None
    error: str | None
    attempts: int | None
    routing_key: str | None
    headers: dict[str, Any] = field(repr=False)
    body: bytes = field(repr=False)

    @property
    def redrives(self) -> int:
        """How many times an operator has sent it back to its follower already."""
        return integer(self.headers.get(REDRIVES, 0))

    def preview(self, limit: int = 2048) -> str:
        """The start of the payload as text (bytes that are not UTF-8 shown as U+FFFD), ``…`` if cut."""
        text = self.body[:limit].decode("utf-8", errors="replace")
        return text + ("…" if len(self.body) > limit else "")

    @classmethod
    def of(cls, message: DeliveredMessage) -> DeadLetter:
        headers = dict(message.header.properties.headers or {})
        reason = text(headers.get(DEAD_LETTER_REASON)) or _broker_reason(headers)
        attempts = headers.get(ATTEMPTS)
        return cls(message.header.properties.message_id, reason, text(headers.get(ERROR)),
                   integer(attempts) if attempts is not None else None, text(headers.get(ORIGINAL_ROUTING_KEY)),
                   headers, bytes(message.body))


def _broker_reason(headers: dict[str, Any]) -> str | None:
    """Why RabbitMQ itself dead-lettered it (``rejected``: the consumer could not copy it)."""
    deaths = headers.get("x-death") or [{}]
    return deaths[0].get("reason")


class DeadLetterQueue:
    """The DLQ of one follower (``queues`` from ``Topology.queues(name)``)."""

    def __init__(self, connection: AbstractConnection, queues: FollowerQueues) -> None:
        self.connection = connection
        self.queues = queues

    async def count(self) -> int:
        """How many dead letters there are now (0 when the follower has not declared its queues yet)."""
        channel = await self.connection.channel()
        try:
            declare_ok = await channel.queue_declare(self.queues.dead_letters, passive=True)
        except ChannelNotFoundEntity:  # the broker closed the channel
            return 0
        await channel.close()
        return declare_ok.message_count or 0

    async def list_messages(self, limit: int = 100) -> list[DeadLetter]:
        """The first ``limit`` dead letters, oldest first, left in the queue."""
        async with self._channel() as channel:
            return [DeadLetter.of(message) for message in await _take(channel, self.queues.dead_letters, limit)]

    async def show(self, message_id: str) -> DeadLetter:
        """The first dead letter with this message id, left in the queue."""
        async with self._channel() as channel:
            for message in await _take(channel, self.queues.dead_letters):
                if message.header.properties.message_id == message_id:
                    return DeadLetter.of(message)
        raise DeadLetterNotFoundError(message_id)

    async def redrive(self, message_id: str) -> int:
        """Send every dead letter with this id back to the follower's queue, attempts reset."""
        count = await self._redrive(lambda message: message.header.properties.message_id == message_id)
        if not count:
            raise DeadLetterNotFoundError(message_id)
        return count

    async def redrive_all(self) -> int:
        """Send every dead letter back to the follower's queue, attempts reset. Returns how many."""
        return await self._redrive(lambda message: True)

    async def purge(self) -> int:
        """Delete every dead letter. Returns how many were deleted."""
        async with self._channel() as channel:
            purge_ok = await channel.queue_purge(self.queues.dead_letters)
            return purge_ok.message_count or 0

    async def _redrive(self, wanted: Callable[[DeliveredMessage], bool]) -> int:
        count = 0
        async with self._channel() as channel:
            for message in await _take(channel, self.queues.dead_letters):
                if wanted(message):
                    await _publish_reset(channel, message, *self.queues.inbox)
                    await channel.basic_ack(delivery_tag(message))
                    count += 1
        return count

    @asynccontextmanager
    async def _channel(self) -> AsyncIterator[AbstractChannel]:
        channel = await self.connection.channel(publisher_confirms=True)
        try:
            yield channel
            await channel.basic_nack(0, multiple=True, requeue=True)  # hand back all not acked
        finally:
            await channel.close()


async def _take(channel: AbstractChannel, queue: str, limit: int | None = None) -> list[DeliveredMessage]:
    """Up to ``limit`` of the messages in ``queue`` now, taken unacked (in queue order)."""
    declare_ok = await channel.queue_declare(queue, passive=True)
    available = declare_ok.message_count or 0
    wanted = available if limit is None else min(limit, available)
    messages = []
    for _ in range(wanted):
        message = await channel.basic_get(queue, no_ack=False)
        if isinstance(message.delivery, Basic.GetEmpty):
            break
        messages.append(message)
    return messages


async def _publish_reset(channel: AbstractChannel, message: DeliveredMessage, exchange: str, routing_key: str) -> None:
    """Back to the follower (its queue, or through its exchange to the message's partition), attempts reset."""
    headers = {k: v for k, v in (message.header.properties.headers or {}).items() if k not in _RESET_ON_REDRIVE}
    headers[REDRIVES] = integer(headers.get(REDRIVES, 0)) + 1
    await channel.basic_publish(message.body, exchange=exchange, routing_key=routing_key, mandatory=True,
                                properties=with_headers(message.header.properties, headers))


class DeadLetterDesk:
    """Every follower's dead letters through one broker connection of the desk's own (the console's): opened
    at first use, and again once lost. ``queues``: each follower's, by its service name."""

    def __init__(self, connect: Callable[[], Awaitable[AbstractConnection]], queues: Mapping[str, FollowerQueues]) -> None:
        self._connect = connect
        self.queues = dict(queues)
        self._connection: AbstractConnection | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def followers(self) -> list[str]:
        return sorted(self.queues)

    async def queue(self, follower: str) -> DeadLetterQueue:
        """The follower's dead-letter queue (``UnknownFollowerError`` for a name that follows nothing)."""
        if follower not in self.queues:
            raise UnknownFollowerError(f"no follower {follower!r}; the followers are {', '.join(self.followers)}")
        return DeadLetterQueue(await self._connected(), self.queues[follower])

    async def close(self) -> None:
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()
        self._connection = None

    async def _connected(self) -> AbstractConnection:
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._connection is None or self._connection.is_closed:
                self._connection = await self._connect()
            return self._connection


class UnknownFollowerError(LookupError):
    """No follower of that name: nothing follows a leader under it."""
