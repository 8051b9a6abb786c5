"""One leader at a time among a context's workers: a PostgreSQL session-level advisory lock.

Duties that must run once per context (its outbox relay, the booking saga's timer) run only in the
worker holding the context's lock; the lock's connection also ``LISTEN``s for the context's new
events while it leads, to wake those duties. Each worker keeps a connection asking for it
(``pg_advisory_lock``, which waits in the server, not in a polling loop); the holder keeps it for as
long as its connection lives. When the holder dies (kill -9 included) or loses its connection, the
server ends its session and the lock goes to a waiting worker at once: fail-over without a lease,
a heartbeat or a poll. The lock's key names the deployment's schema and the context, so deployments
sharing a database (tests, benchmarks) do not contend.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from infrastructure.listen import notified_channels
from infrastructure.resilience import Backoff

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name``."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


class Leadership:
    """Holds, or waits for, the advisory lock ``name`` on a connection of its own; ``held`` while it has it."""

    def __init__(self, connection: Mapping[str, Any], name: str, slots: int = 1,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.connection = dict(connection)
        self.on_change = on_change
        """Told ``True`` when this worker starts leading, ``False`` when it stops (the metrics)."""
        self.name = name
        self.key = lock_key(name)
        self.slots = slots
        self.slot: int | None = None
        """Which of the context's ``slots`` workers this one is (``None``: more workers than slots): a
        second lock, taken without waiting on the same connection, so workers can share partitions."""
        self.slotted = asyncio.Event()
        self.held = asyncio.Event()
        self.released = asyncio.Event()
        self.released.set()
        self._channels: dict[str, list[Callable[[], None]]] = {}

    def on_notify(self, channel: str, callback: Callable[[], None]) -> None:
        """While leading, call ``callback`` on every ``NOTIFY`` on ``channel`` (and once on taking the lead):
        the leader's duties wake on new events through the lock's own connection, no second one."""
        self._channels.setdefault(channel, []).append(callback)

    async def run(self, stop: asyncio.Event, first_retry: float = 0.2, longest_retry: float = 5.0) -> None:
        """Until ``stop``: wait for the lock, hold it while the connection lives; again after losing it."""
        backoff = Backoff(first_retry, longest_retry)
        while not stop.is_set():
            try:
                await self._hold(stop)
                backoff = Backoff(first_retry, longest_retry)
            except (psycopg.OperationalError, OSError) as error:
                log.warning("leadership %s: the connection failed (%s); asking again in %.1fs", self.name, error, backoff.delay)
            finally:
                self._release()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff.next())

    async def _hold(self, stop: asyncio.Event) -> None:
        async with await psycopg.AsyncConnection.connect(**self.connection, autocommit=True) as connection:
            self.slot = await self._claim_slot(connection)
            self.slotted.set()
            if not await _first(connection.execute("SELECT pg_advisory_lock(%s)", (self.key,)), stop):
                return
            for channel in self._channels:
                await connection.execute(SQL("LISTEN {0}").format(Identifier(channel)))
            log.info("leadership %s: this worker leads", self.name)
            self.released.clear()
            self.held.set()
            if self.on_change is not None:
                self.on_change(True)
            self._wake(self._channels)  # whatever was recorded before this worker led
            await _first(self._hear(connection), stop)  # raises when the connection breaks

    async def _claim_slot(self, connection: psycopg.AsyncConnection[Any]) -> int | None:
        for slot in range(self.slots):
            cursor = await connection.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(f"{self.name}|slot{slot}"),))
            row = await cursor.fetchone()
            if row is not None and row[0]:
                return slot
        return None

    async def _hear(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """The notifications, until the server or the network closes the connection (raises then)."""
        async for channel in notified_channels(connection):
            self._wake([channel])

    def _wake(self, channels: Iterable[str]) -> None:
        for channel in channels:
            for callback in self._channels.get(channel, ()):
                callback()

    def _release(self) -> None:
        if self.held.is_set():
            log.info("leadership %s: this worker no longer leads", self.name)
            if self.on_change is not None:
                self.on_change(False)
        self.held.clear()
        self.released.set()


async def while_leading(leadership: Leadership | None, stop: asyncio.Event,
                        work: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``work(until)`` whenever this worker leads (always, without a ``leadership``), until ``stop``;
    ``until`` is set when ``stop`` is, or when the leadership is lost (``work`` must then return)."""
    while not stop.is_set():
        if leadership is not None and not await _first(leadership.held.wait(), stop):
            return
        until = asyncio.Event()
        watch = asyncio.ensure_future(_set_when_first(until, stop, None if leadership is None else leadership.released))
        try:
            await work(until)
        finally:
            watch.cancel()
        if leadership is None:
            return


async def _set_when_first(until: asyncio.Event, *events: asyncio.Event | None) -> None:
    waiting = [asyncio.ensure_future(event.wait()) for event in events if event is not None]
    try:
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        until.set()
    finally:
        for future in waiting:
            future.cancel()


async def _first(awaitable: Awaitable[Any], stop: asyncio.Event) -> bool:
    """Await ``awaitable`` unless ``stop`` comes first (then cancel it); whether it finished."""
    task = asyncio.ensure_future(awaitable)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if task in done:
        task.result()  # raises what the awaitable raised
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
        await task
    return False


