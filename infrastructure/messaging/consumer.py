"""Feeds one follower application from its queue, with retries and dead letters.

For each message: decode it, ``deliver`` it to the follower in a worker thread (the
follower is synchronous), then ack. A handler error republishes the message to the
retry queue of the next delay level (its TTL brings it back to the follower's queue);
after ``max_attempts`` it goes to the dead-letter queue. A message that cannot be
decoded goes straight to the DLQ. The original is acked only once its copy is
confirmed, so a message is never lost, and nothing waits behind a failing one. If the
copy cannot be made (a retry queue deleted, a publish timeout) the original is rejected
without requeue, and the queue's own dead-lettering moves it to the DLQ.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from aiormq.abc import AbstractChannel, Basic, DeliveredMessage
from eventsourcing.system import Follower

from infrastructure.messaging.codec import PoisonMessageError, decode
from infrastructure.messaging.delivery import deliver
from infrastructure.messaging.topology import FollowerQueues
from infrastructure.observability.logging import log_context
from infrastructure.observability.metrics import Metrics
from infrastructure.observability.tracing import consumer_span

log = logging.getLogger(__name__)

ATTEMPT = "x-attempt"
ERROR = "x-error"
DEAD_LETTER_REASON = "x-dead-letter-reason"
ATTEMPTS = "x-attempts"
ORIGINAL_ROUTING_KEY = "x-original-routing-key"
POISON = "poison"
MAX_ATTEMPTS_REACHED = "max-attempts"
RETRIED = "retried"
DEAD_LETTERED = "dead_lettered"
REJECTED = "rejected"
UNSETTLED = "unsettled"
_MAX_ERROR_LENGTH = 1_000


class FollowerConsumer:
    """Consumes a follower's queue: manual acks, bounded prefetch, retries, DLQ.

    ``outcomes`` counts messages by how they ended: ``processed``, ``duplicate``,
    ``retried``, ``dead_lettered``, ``rejected`` (could not be copied: dead-lettered by
    the broker), ``unsettled`` (channel lost) - for metrics, and for tests to wait on.
    """

    def __init__(self, follower: Follower[Any], channel: AbstractChannel, queues: FollowerQueues,
                 prefetch: int = 16, max_attempts: int = 5, publish_timeout: float = 10.0,
                 metrics: Metrics | None = None) -> None:
        self.follower = follower
        self.channel = channel
        self.queues = queues
        self.prefetch = prefetch
        self.max_attempts = max_attempts
        self.publish_timeout = publish_timeout
        self._consumer_tag: str | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self.outcomes: Counter[str] = Counter()
        self.metrics = metrics
        if metrics is not None:
            metrics.follow(queues.follower, len(queues.retries))

    async def start(self) -> None:
        """Start consuming; at most ``prefetch`` messages are unacked at a time."""
        await self.channel.basic_qos(prefetch_count=self.prefetch)
        consume_ok = await self.channel.basic_consume(self.queues.main, self._on_message, no_ack=False)
        self._consumer_tag = consume_ok.consumer_tag

    @property
    def consuming(self) -> bool:
        """Whether the broker may still send this consumer messages."""
        return self._consumer_tag is not None

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop consuming, let in-flight messages finish and ack, then close the channel.

        Messages the broker had already sent but no handler had started return to the
        queue when the channel closes.
        """
        if self._consumer_tag is not None and not self.channel.is_closed:
            await self.channel.basic_cancel(self._consumer_tag)
        self._consumer_tag = None
        await asyncio.sleep(0)  # let handlers of messages that arrived before the cancel start
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=timeout)
        await self.channel.close()

    async def _on_message(self, message: DeliveredMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            with log_context(**message_ids(message.header.properties)):  # every line below names the message
                started = time.perf_counter()
                outcome = await self._settle(message)
                self.outcomes[outcome] += 1
                if self.metrics is not None:
                    self.metrics.consumed(self.queues.follower, outcome)
                log.info("message %s %s", message.header.properties.message_id, outcome, extra={
                    "outcome": outcome, "message_type": message.header.properties.message_type,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2)})
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def _settle(self, message: DeliveredMessage) -> str:
        try:
            properties = message.header.properties
            with consumer_span(properties.headers, self.queues.main, properties.message_id) as span:
                outcome = await self._handle(message)  # the follower's events continue this span's trace
                span.set_attribute("clinic.outcome", outcome)
            await self.channel.basic_ack(message.delivery_tag)
            return outcome
        except Exception:  # noqa: BLE001 - e.g. the retry queue is gone: reject instead (below)
            log.exception("could not settle message %s; rejecting it", message.header.properties.message_id)
            return await self._reject(message)

    async def _reject(self, message: DeliveredMessage) -> str:
        """Reject without requeue: the queue's own dead-lettering moves it to the DLQ.

        If the channel is gone the message stays unacked, and the broker redelivers it.
        """
        if self.channel.is_closed:
            return UNSETTLED
        await self.channel.basic_reject(message.delivery_tag, requeue=False)
        return REJECTED

    async def _handle(self, message: DeliveredMessage) -> str:
        """Deliver, retry or dead-letter the message; returns the outcome."""
        properties = message.header.properties
        try:
            domain_event, tracking = decode(self.follower.mapper, message.body, properties)
        except PoisonMessageError as error:
            log.error("poison message %s: %s", properties.message_id, error)
            await self._dead_letter(message, POISON, error, attempts=_attempt(properties))
            return DEAD_LETTERED
        try:
            delivery = await asyncio.to_thread(deliver, self.follower, domain_event, tracking)
        except Exception as error:  # noqa: BLE001 - any handler error is retried, then dead-lettered
            return await self._retry_or_dead_letter(message, error)
        return delivery.value

    async def _retry_or_dead_letter(self, message: DeliveredMessage, error: Exception) -> str:
        attempt = _attempt(message.header.properties)
        if attempt >= self.max_attempts:
            log.error("message %s failed %d times, dead-lettered: %r",
                      message.header.properties.message_id, attempt, error)
            await self._dead_letter(message, MAX_ATTEMPTS_REACHED, error, attempts=attempt)
            return DEAD_LETTERED
        level = min(attempt, len(self.queues.retries))
        retry_queue = self.queues.retries[level - 1]
        log.warning("message %s failed (attempt %d), retrying via %s: %r",
                    message.header.properties.message_id, attempt, retry_queue, error)
        await self._republish(message, retry_queue, {ATTEMPT: attempt + 1, ERROR: describe(error)})
        if self.metrics is not None:
            self.metrics.retried(self.queues.follower, level)
        return RETRIED

    async def _dead_letter(self, message: DeliveredMessage, reason: str, error: Exception,
                           attempts: int) -> None:
        changes = {DEAD_LETTER_REASON: reason, ERROR: describe(error), ATTEMPTS: attempts}
        await self._republish(message, self.queues.dead_letters, changes)

    async def _republish(self, message: DeliveredMessage, queue: str, changes: dict[str, Any]) -> None:
        properties = message.header.properties
        headers = {**(properties.headers or {}), **changes}
        headers.setdefault(ORIGINAL_ROUTING_KEY, message.routing_key)
        await self.channel.basic_publish(
            message.body, exchange="", routing_key=queue, properties=with_headers(properties, headers),
            mandatory=True, timeout=self.publish_timeout)


def message_ids(properties: Basic.Properties) -> dict[str, str | None]:
    """The message's correlation and saga ids, and its event as the cause (``<originator id>@<version>``)."""
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in (properties.headers or {}).items()}
    origin, version = headers.get("originator_id"), headers.get("originator_version")
    return {"correlation_id": properties.correlation_id or headers.get("correlation_id"),
            "causation_id": f"{origin}@{version}" if origin is not None and version is not None else None,
            "saga_id": headers.get("saga_id"), "message_id": properties.message_id}


def _attempt(properties: Basic.Properties) -> int:
    """This delivery's attempt number: 1 unless a retry said otherwise."""
    try:
        return max(1, int((properties.headers or {}).get(ATTEMPT, 1)))
    except (TypeError, ValueError):
        return 1


def describe(error: BaseException) -> str:
    """``TypeName: message``, short enough for a header."""
    return f"{type(error).__name__}: {error}"[:_MAX_ERROR_LENGTH]


def with_headers(properties: Basic.Properties, headers: dict[str, Any]) -> Basic.Properties:
    """A copy of ``properties`` (persistent) with ``headers`` instead of the original ones."""
    return Basic.Properties(
        content_type=properties.content_type, content_encoding=properties.content_encoding,
        headers=headers, delivery_mode=2, priority=properties.priority,
        correlation_id=properties.correlation_id, message_id=properties.message_id,
        timestamp=properties.timestamp, message_type=properties.message_type, app_id=properties.app_id,
    )
