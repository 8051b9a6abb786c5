"""Feeds one follower application from its queue, in batches, with retries and dead letters.

Messages arriving while a batch is processed wait in a buffer (at most ``prefetch`` are unacked);
the next batch takes up to ``batch_size`` of them: one at a time when traffic is light, many when it
is heavy, and never a wait for a batch to fill. A batch goes to the delivery engine
(``process_managers/delivery.py``) in a worker thread: every event it produces and every message's
tracking row are recorded in one transaction. Then the batch is settled: a message that could not be
decoded goes straight to the DLQ; one whose event failed is republished to the retry queue of the
next delay level (its TTL brings it back to the follower's queue), or to the DLQ after
``max_attempts``; once every copy is confirmed, the whole batch is acked with one ``multiple`` ack.
So a message is never lost, and nothing waits behind a failing one. If a copy cannot be made (a retry
queue deleted, a publish timeout) that message is rejected without requeue, and the queue's own
dead-lettering moves it to the DLQ. While the event store is unreachable the batch is offered again
with backoff, unacked: nothing is retried or dead-lettered for an outage. A message delivered again
unsettled (its consumer died on it) is counted (``attempts.py``); past ``DELIVERY_LIMIT`` deliveries it
is dead-lettered unprocessed, so a message that crashes its consumer cannot crash them for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

from aiormq.abc import AbstractChannel, Basic, DeliveredMessage

from infrastructure.messaging.attempts import DeliveryAttempts
from infrastructure.messaging.codec import PoisonMessageError, decode
from infrastructure.messaging.headers import integer, text
from infrastructure.messaging.topology import FollowerQueues
from infrastructure.observability.logging import log_context
from infrastructure.observability.metrics import Metrics
from infrastructure.observability.tracing import consumer_span
from infrastructure.resilience import Backoff
from process_managers.base import Job
from process_managers.delivery import OUTAGES, Outcome, Result, deliver_batch

log = logging.getLogger(__name__)
T = TypeVar("T")

ATTEMPT = "x-attempt"
ERROR = "x-error"
DEAD_LETTER_REASON = "x-dead-letter-reason"
ATTEMPTS = "x-attempts"
ORIGINAL_ROUTING_KEY = "x-original-routing-key"
POISON = "poison"
MAX_ATTEMPTS_REACHED = "max-attempts"
DELIVERY_LIMIT_REACHED = "delivery-limit"
DELIVERY_LIMIT = 5
"""The most deliveries of one message that go unsettled (each one's consumer died) before the next is
dead-lettered unprocessed (``attempts.py``)."""
RETRIED = "retried"
DEAD_LETTERED = "dead_lettered"
REJECTED = "rejected"
UNSETTLED = "unsettled"
_MAX_ERROR_LENGTH = 1_000
DEFAULT_PREFETCH = 256
DEFAULT_BATCH_SIZE = 100
STANDBY_SECONDS = 2.0
"""How long a worker waits before standing by on the partitions it does not prefer (see ``start``)."""
OUTAGE_BACKOFF_SECONDS = (0.2, 5.0)
"""First and longest wait before a batch is offered again while the event store is unreachable."""


class FollowerConsumer:
    """Consumes a follower's queue in batches: manual acks, bounded prefetch, retries, DLQ.

    ``outcomes`` counts messages by how they ended: ``processed``, ``duplicate``,
    ``retried``, ``dead_lettered``, ``rejected`` (could not be copied: dead-lettered by
    the broker), ``unsettled`` (channel lost) - for metrics, and for tests to wait on.
    ``batches`` counts the batches delivered; ``store_outages`` the times a batch found the event store
    out and was held, unacked and with no retry counted, to be offered again.
    """

    def __init__(self, follower: Any, channel: AbstractChannel, queues: FollowerQueues,
                 prefetch: int = DEFAULT_PREFETCH, batch_size: int = DEFAULT_BATCH_SIZE, max_attempts: int = 5,
                 publish_timeout: float = 10.0, metrics: Metrics | None = None,
                 attempts: DeliveryAttempts | None = None, delivery_limit: int = DELIVERY_LIMIT) -> None:
        self.follower = follower
        self.channel = channel
        self.queues = queues
        self.prefetch = prefetch
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.publish_timeout = publish_timeout
        self._consumer_tags: list[str] = []
        self._queues: dict[str, str] = {}
        self._standing_by: asyncio.Task[None] | None = None
        self._waiting: list[DeliveredMessage] = []
        self._arrived = asyncio.Event()
        self._settling: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.outcomes: Counter[str] = Counter()
        self.batches = 0
        self.store_outages = 0
        self.attempts = attempts
        """Where redeliveries are counted (``None``: not counted, redelivered for ever like the queue does)."""
        self.delivery_limit = delivery_limit
        self.metrics = metrics
        if metrics is not None:
            metrics.follow(queues.follower, len(queues.retries))

    async def start(self, preferred: Collection[str] | None = None, standby_delay: float = STANDBY_SECONDS) -> None:
        """Start consuming; at most ``prefetch`` messages are unacked at a time.

        A partitioned follower consumes every partition; each has one active consumer at a time (the
        first to register; the next takes over when it goes). So that the workers of a context share the
        partitions, this one registers at once on the ``preferred`` ones (all, if ``None``) and only
        ``standby_delay`` seconds later on the others, by then their preferred workers' (fail-over)."""
        await self.channel.basic_qos(prefetch_count=self.prefetch)
        self._settling = asyncio.create_task(self._settle_batches(), name=f"consume {self.queues.main}")
        first = [queue for queue in self.queues.consumed if preferred is None or queue in preferred]
        await self._consume(first)
        rest = [queue for queue in self.queues.consumed if queue not in first]
        if rest:
            self._standing_by = asyncio.create_task(self._consume_later(rest, standby_delay))

    async def _consume(self, queues: Iterable[str]) -> None:
        for queue in queues:
            consume_ok = await self.channel.basic_consume(queue, self._on_message, no_ack=False)
            tag = consume_ok.consumer_tag
            if tag is None:
                raise RuntimeError(f"the broker named no consumer tag for {queue}")
            self._consumer_tags.append(tag)
            self._queues[tag] = queue

    def queue_of(self, consumer_tag: str) -> str | None:
        """The queue (partition) a delivery with this consumer tag came from."""
        return self._queues.get(consumer_tag)

    async def _consume_later(self, queues: list[str], delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        if not self._stopping.is_set():
            await self._consume(queues)

    @property
    def consuming(self) -> bool:
        """Whether the broker may still send this consumer messages."""
        return bool(self._consumer_tags)

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop consuming, let the batch in flight finish and be acked, then close the channel.

        Messages the broker had sent but no batch had taken return to the queue when the channel closes.
        """
        self._stopping.set()
        if self._standing_by is not None:
            await asyncio.gather(self._standing_by, return_exceptions=True)
        while self._consumer_tags and not self.channel.is_closed:
            await self.channel.basic_cancel(self._consumer_tags.pop())
        self._consumer_tags.clear()
        self._arrived.set()
        if self._settling is not None:
            await asyncio.wait({self._settling}, timeout=timeout)
            self._settling.cancel()
        await self.channel.close()

    async def _on_message(self, message: DeliveredMessage) -> None:
        self._waiting.append(message)
        self._arrived.set()

    async def _settle_batches(self) -> None:
        while not self._stopping.is_set():
            await self._arrived.wait()
            self._arrived.clear()
            while self._waiting and not self._stopping.is_set():
                batch, self._waiting = self._waiting[:self.batch_size], self._waiting[self.batch_size:]
                await self._settle(batch)

    async def _settle(self, batch: list[DeliveredMessage]) -> None:
        try:
            outcomes = await self._handle(batch)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the channel broke mid-settle, or a bug: the batch goes back
            log.exception("could not settle a batch of %d from %s; returning it to the queue", len(batch),
                          self.queues.main)
            outcomes = [await self._return(message) for message in batch]
        self.batches += 1
        for outcome in outcomes:
            self.outcomes[outcome] += 1
            if self.metrics is not None:
                self.metrics.consumed(self.queues.follower, outcome)
        log.debug("settled a batch of %d from %s: %s", len(batch), self.queues.main, dict(Counter(outcomes)))

    async def _handle(self, batch: list[DeliveredMessage]) -> list[str]:
        """Decode, deliver, retry or dead-letter each message of the batch, then ack them all at once."""
        jobs: list[Job] = []
        outcomes: list[str | None] = [None] * len(batch)
        settling = []
        redelivered = [message_id(m) for m in batch if m.redelivered and message_id(m)]
        counted = await self._count_redeliveries(redelivered)
        if counted is None:  # stopped while the store was down
            return [UNSETTLED] * len(batch)
        for index, message in enumerate(batch):
            deliveries = counted.get(message_id(message), 1)
            if deliveries > self.delivery_limit:
                settling.append((index, self._dead_letter_unsettled(message, deliveries)))
                continue
            try:
                event, tracking = decode(self.follower.mapper, message.body, message.header.properties)
            except PoisonMessageError as error:
                log.error("poison message %s: %s", message.header.properties.message_id, error)
                settling.append((index, self._dead_letter(message, POISON, error, _attempt(message))))
                continue
            jobs.append(Job(event, tracking, around=partial(self._message_context, message)))
            outcomes[index] = ""  # delivered below
        delivered = await self._deliver(jobs) if jobs else []
        if delivered is None:  # stopped while the store was down: unacked, redelivered after the channel closes
            return [UNSETTLED] * len(batch)
        results = iter(delivered)
        for index, message in enumerate(batch):
            if outcomes[index] == "":
                result = next(results)
                if result.outcome is Outcome.FAILED:
                    settling.append((index, self._retry_or_dead_letter(message, result)))
                else:
                    outcomes[index] = result.outcome.value
        copied = await asyncio.gather(*(copy for _, copy in settling), return_exceptions=True)
        for (index, _), outcome in zip(settling, copied, strict=True):
            outcomes[index] = outcome if isinstance(outcome, str) else await self._copy_failed(batch[index], outcome)
        await self.channel.basic_ack(delivery_tag(batch[-1]), multiple=True)
        if redelivered:
            await self._forget_redeliveries(redelivered)
        return [outcome or UNSETTLED for outcome in outcomes]

    async def _forget_redeliveries(self, message_ids: list[str]) -> None:
        """Drop the settled messages' counts; if the store is out now they stay, harmless unless the same
        message is delivered again and again later (a relay's or an operator's republishing)."""
        if self.attempts is None:
            return
        try:
            await asyncio.to_thread(self.attempts.forget, self.queues.follower, message_ids)
        except OUTAGES as error:
            log.warning("%s: could not forget %d settled redeliveries (%s)", self.queues.follower,
                        len(message_ids), error)

    async def _count_redeliveries(self, message_ids: list[str]) -> dict[str, int] | None:
        """Each redelivered message's deliveries so far, counted once more; held like a batch while the
        store is out (``None``: stopped meanwhile)."""
        if not message_ids or self.attempts is None:
            return {}
        attempts = self.attempts
        return await self._while_store_out(lambda: attempts.count(self.queues.follower, message_ids),
                                           f"counting {len(message_ids)} redeliveries")

    async def _dead_letter_unsettled(self, message: DeliveredMessage, deliveries: int) -> str:
        error = RuntimeError(f"delivered {deliveries} times without being settled: it may crash its consumer")
        log.error("message %s dead-lettered unprocessed: %s", message_id(message), error)
        return await self._dead_letter(message, DELIVERY_LIMIT_REACHED, error, attempts=deliveries)

    async def _deliver(self, jobs: list[Job]) -> list[Result] | None:
        """The engine's results for ``jobs``; while the store is unreachable, offered again with backoff
        (``None``: the consumer was stopped meanwhile)."""
        return await self._while_store_out(lambda: deliver_batch(self.follower, jobs, exact=True),
                                           f"the batch of {len(jobs)}")

    async def _while_store_out(self, work: Callable[[], T], what: str) -> T | None:
        """``work`` in a thread; while the event store is unreachable, again with backoff, no retry counted
        (``None``: the consumer was stopped meanwhile)."""
        backoff = Backoff(*OUTAGE_BACKOFF_SECONDS)
        while True:
            try:
                return await asyncio.to_thread(work)
            except OUTAGES as error:
                self.store_outages += 1
                log.warning("%s: the event store failed (%s); offering %s again in %.1fs",
                            self.queues.follower, error, what, backoff.delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=backoff.next())
            if self._stopping.is_set():
                return None

    @contextmanager
    def _message_context(self, message: DeliveredMessage) -> Iterator[None]:
        """Around one message's processing: its ids on every log line, and the CONSUMER span."""
        properties = message.header.properties
        with log_context(**message_ids(properties)), \
                consumer_span(properties.headers, self.queues.main, properties.message_id):
            log.debug("processing message %s (%s)", properties.message_id, properties.message_type)
            yield

    async def _copy_failed(self, message: DeliveredMessage, error: BaseException) -> str:
        log.error("could not copy message %s to a retry queue or the DLQ (%r); rejecting it",
                  message.header.properties.message_id, error)
        return await self._reject(message)

    async def _return(self, message: DeliveredMessage) -> str:
        """Give the message back to the queue unsettled (``nack`` with requeue): it comes again, counted
        as a redelivery, and past the delivery limit it is dead-lettered; never dead-lettered at once
        for an error of the consumer itself. A closed channel returns it anyway."""
        with contextlib.suppress(Exception):  # an acked tag, or a channel closing: it is the broker's then
            if not self.channel.is_closed:
                await self.channel.basic_nack(delivery_tag(message), requeue=True)
        return UNSETTLED

    async def _reject(self, message: DeliveredMessage) -> str:
        """Reject without requeue: the queue's own dead-lettering moves it to the DLQ.

        If the channel is gone the message stays unacked, and the broker redelivers it.
        """
        if self.channel.is_closed:
            return UNSETTLED
        await self.channel.basic_reject(delivery_tag(message), requeue=False)
        return REJECTED

    async def _retry_or_dead_letter(self, message: DeliveredMessage, result: Result) -> str:
        attempt, error = _attempt(message), result.error or RuntimeError("failed")
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

    async def _dead_letter(self, message: DeliveredMessage, reason: str, error: BaseException,
                           attempts: int) -> str:
        changes = {DEAD_LETTER_REASON: reason, ERROR: describe(error), ATTEMPTS: attempts}
        await self._republish(message, self.queues.dead_letters, changes)
        return DEAD_LETTERED

    async def _republish(self, message: DeliveredMessage, queue: str, changes: dict[str, Any]) -> None:
        properties = message.header.properties
        headers = {**(properties.headers or {}), **changes}
        headers.setdefault(ORIGINAL_ROUTING_KEY, message.routing_key)
        await self.channel.basic_publish(
            message.body, exchange="", routing_key=queue, properties=with_headers(properties, headers),
            mandatory=True, timeout=self.publish_timeout)


def message_ids(properties: Basic.Properties) -> dict[str, str | None]:
    """The message's correlation and saga ids, and its event as the cause (``<originator id>@<version>``)."""
    headers = {k: text(v) for k, v in (properties.headers or {}).items()}
    origin, version = headers.get("originator_id"), headers.get("originator_version")
    return {"correlation_id": properties.correlation_id or headers.get("correlation_id"),
            "causation_id": f"{origin}@{version}" if origin is not None and version is not None else None,
            "saga_id": headers.get("saga_id"), "message_id": properties.message_id}


def message_id(message: DeliveredMessage) -> str:
    """The message's id (the relay sets one on every event; ``""`` if a publisher did not)."""
    return str(message.header.properties.message_id or "")


def delivery_tag(message: DeliveredMessage) -> int:
    """The tag to ack or reject ``message`` by (a delivered message always has one)."""
    tag = message.delivery_tag
    if tag is None:
        raise ValueError("a delivered message without a delivery tag")
    return tag


def _attempt(message: DeliveredMessage) -> int:
    """This delivery's attempt number: 1 unless a retry said otherwise."""
    try:
        return max(1, integer((message.header.properties.headers or {}).get(ATTEMPT, 1)))
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
