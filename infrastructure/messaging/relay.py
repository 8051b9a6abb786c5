"""The outbox relay: an application's notification log, published to the exchange in order.

The notification log *is* the outbox: every event an application records gets the
next notification id in the same transaction. The relay reads the notifications
after its saved position, a batch at a time, publishes those some follower's queue takes
(``topics``; persistent, ``mandatory``, with publisher confirms, all of a batch in flight
together) and moves its position only past what the broker confirmed; it saves that position
at most every ``SAVE_SECONDS`` while it keeps publishing, and within that time of being caught up. A
crash before a save publishes the tail again when the relay restarts: at-least-once, and
followers detect the duplicates exactly. It reads when
told there is something new (``prompt``: an in-process write, or PostgreSQL's ``NOTIFY``
through ``infrastructure/listen.py``); only a store that cannot tell is polled.

Run one relay per application (a second one only publishes duplicates).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from aiormq.abc import AbstractChannel
from aiormq.exceptions import PublishError
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, Notification, Tracking

from infrastructure.messaging.codec import encode
from infrastructure.observability.metrics import Metrics
from infrastructure.observability.tracing import publish_span

NO_ROUTE = 312
SAVE_SECONDS = 0.2
"""While publishing continuously, the position is saved at most this often (and once the relay is caught
up): a crash republishes at most this much, which followers recognise as duplicates."""

log = logging.getLogger(__name__)


class PositionStore(Protocol):
    """Where a relay keeps the last notification id the broker confirmed."""

    def get(self) -> int: ...

    def save(self, notification_id: int) -> None: ...


class TrackingPosition:
    """The relay's position, in the application's own store, as a tracking record.

    It uses the tracking table the library already creates for the application (the
    same database, SQLite file or PostgreSQL schema, migrated with the rest), under a
    name no follower uses: ``<app name>.relay``. A restarted relay reads it back.
    """

    def __init__(self, app: Application[Any], name: str | None = None) -> None:
        self.name = name or f"{app.name}.relay"
        self.recorder = app.factory.tracking_recorder()

    def get(self) -> int:
        return self.recorder.max_tracking_id(self.name) or 0

    def save(self, notification_id: int) -> None:
        try:
            self.recorder.insert_tracking(Tracking(self.name, notification_id))
        except IntegrityError:
            if self.get() < notification_id:
                raise
            # Already saved (another relay instance got there first): nothing to do.


class OutboxRelay:
    """Publishes one application's notifications to the exchange, in order, at least once."""

    def __init__(self, app: Application[Any], channel: AbstractChannel, exchange: str,
                 position: PositionStore | None = None, batch_size: int = 500,
                 poll_interval: float | None = 0.5, publish_timeout: float = 10.0, metrics: Metrics | None = None,
                 topics: Collection[str] | None = None) -> None:
        self.app = app
        self.channel = channel
        self.exchange = exchange
        self.position = position or TrackingPosition(app)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        """How long to wait for a ``prompt`` before reading anyway (``None``: wait for one)."""
        self.topics = None if topics is None else frozenset(topics)
        """The topics some queue takes (``None``: publish every event)."""
        self.publish_timeout = publish_timeout
        self.metrics = metrics
        if metrics is not None:
            metrics.published(app.name, 0)  # the series exists before the first event
        self._prompted: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._position: int | None = None
        """The last notification id published (or passed): read from ``position`` once, then kept here."""
        self._saved: int | None = None
        self._saved_at = float("-inf")

    def prompt(self) -> None:
        """New events were recorded (callable from any thread): publish now, not at the next poll."""
        if self._loop is not None and self._prompted is not None:
            self._loop.call_soon_threadsafe(self._prompted.set)

    async def run_once(self, save: bool = True) -> int:
        """Publish the next batch after the position; returns how many notifications it read. ``save``:
        save the position now (``run`` saves it at most every ``SAVE_SECONDS`` instead)."""
        if self._position is None:
            self._position = self._saved = await asyncio.to_thread(self.position.get)
        notifications = await asyncio.to_thread(
            self.app.recorder.select_notifications, self._position, self.batch_size, inclusive_of_start=False)
        if not notifications:
            return 0
        routed = [n for n in notifications if self.topics is None or n.topic in self.topics]
        results = await asyncio.gather(*(self._publish(n) for n in routed), return_exceptions=True)
        confirmed = _confirmed_prefix(routed, results)
        if len(confirmed) < len(routed):  # the position may pass only what came before the failed one
            failed = routed[len(confirmed)]
            done = [n for n in notifications if n.id < failed.id]
        else:
            done = list(notifications)
        if done:
            self._position = done[-1].id
            if self.metrics is not None:
                self.metrics.published(self.app.name, len(confirmed))
        if save or len(confirmed) < len(routed):
            await self._save()
        if len(confirmed) < len(routed):
            failure = results[len(confirmed)]
            raise failure if isinstance(failure, BaseException) else RuntimeError(f"publishing {routed[len(confirmed)].id} failed")
        return len(notifications)

    async def _save(self) -> None:
        if self._position is not None and self._position != self._saved:
            await asyncio.to_thread(self.position.save, self._position)
            self._saved, self._saved_at = self._position, time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; when caught up, wait for a :meth:`prompt` (or ``poll_interval``).

        Errors propagate (crash-only): the saved position is safe, and whoever runs the
        relay restarts it with a fresh connection.
        """
        self._loop, self._prompted = asyncio.get_running_loop(), asyncio.Event()
        try:
            while not stop.is_set():
                self._prompted.clear()  # before reading: a prompt during the read is not lost
                published = await self.run_once(save=False)
                due = self._saved_at + SAVE_SECONDS - time.monotonic()
                if due <= 0:
                    await self._save()
                if published < self.batch_size:
                    dirty = self._position != self._saved
                    waiting = max(due, 0) if dirty else self.poll_interval
                    if self.poll_interval is not None and waiting is not None:
                        waiting = min(waiting, self.poll_interval)
                    await _wait_either(stop, self._prompted, waiting)
        finally:
            with contextlib.suppress(Exception):  # an older saved position is safe: a restart republishes
                await self._save()

    async def _publish(self, notification: Notification) -> None:
        # Called for a whole batch at once: each call takes the channel's lock in turn, so
        # the frames go out in notification order, and the confirms are awaited together.
        message = encode(self.app.name, self.app.mapper, notification)
        headers = message.properties.headers
        if headers is None:
            raise ValueError("an encoded message carries its headers")
        with publish_span(headers, self.exchange, message.routing_key,
                          message.properties.message_id):  # no await before the publish: order is kept
            await self.channel.basic_publish(
                message.body, exchange=self.exchange, routing_key=message.routing_key,
                properties=message.properties, mandatory=True, timeout=self.publish_timeout)


def _confirmed_prefix(notifications: Sequence[Notification], results: Sequence[Any]) -> list[Notification]:
    """The notifications before the first one that failed: the position may advance past these only.

    An event returned as unroutable (``NO_ROUTE``) is not a failure: every worker declares the
    whole system's queues before relaying, and a queue binds only the events its follower handles, so
    no queue means no context reacts to that event.
    """
    confirmed = []
    for notification, result in zip(notifications, results, strict=True):
        if _unroutable(result):
            log.debug("no queue follows %s (notification %s): not routed", notification.topic, notification.id)
        elif isinstance(result, BaseException):
            log.error("publishing %s:%s failed: %r", notification.originator_id, notification.id, result)
            break
        confirmed.append(notification)
    return confirmed


def _unroutable(result: Any) -> bool:
    return (isinstance(result, PublishError) and result.message is not None
            and getattr(result.message.delivery, "reply_code", None) == NO_ROUTE)


async def _wait_either(stop: asyncio.Event, prompted: asyncio.Event, seconds: float | None) -> None:
    """Until ``stop`` or ``prompted`` is set, or ``seconds`` (if not ``None``) have passed."""
    waiting = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(prompted.wait())]
    try:
        await asyncio.wait(waiting, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in waiting:
            future.cancel()
