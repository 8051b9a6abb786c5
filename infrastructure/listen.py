"""Push from the event store: PostgreSQL's ``NOTIFY``, heard with ``LISTEN``, wakes whoever reads a log.

The library's PostgreSQL recorder sends ``NOTIFY <app>_events`` in every transaction that records
events (delivered when it commits). A process that reads logs written by other processes (the outbox
relay of a context whose API replicas record, the projection worker, the saga timer) keeps one
connection listening on the channels of the logs it reads, and calls that log's callbacks on each
notification, so it reads when there is something to read instead of polling. After every
(re)connection each callback is called once: what was recorded while nobody listened is read then.
Stores without ``NOTIFY`` (SQLite, memory) have no listener (``for_apps`` returns ``None``): their
readers poll, and in-process writers prompt them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import psycopg
from psycopg import generators
from psycopg.sql import SQL, Identifier

from infrastructure.resilience import Backoff

log = logging.getLogger(__name__)
CONNECTION_PARAMETERS = ("dbname", "host", "port", "user", "password")


class EventsListener:
    """One connection ``LISTEN``ing on some logs' channels; a log's callbacks run on each ``NOTIFY``."""

    def __init__(self, connection: Mapping[str, Any], channels: Mapping[str, str]) -> None:
        self.connection = dict(connection)
        self.channels = dict(channels)
        """Log (application) name → its ``NOTIFY`` channel."""
        self.listening = False
        self._callbacks: dict[str, list[Callable[[], None]]] = {name: [] for name in self.channels}

    @classmethod
    def for_apps(cls, apps: Mapping[str, Any]) -> EventsListener | None:
        """A listener for these applications' logs, if their store sends ``NOTIFY`` (PostgreSQL)."""
        channels = {name: app.recorder.channel_name for name, app in apps.items()
                    if hasattr(app.recorder, "channel_name")}
        if not channels:
            return None
        pool = next(iter(apps.values())).recorder.datastore.pool
        return cls({key: pool.kwargs[key] for key in CONNECTION_PARAMETERS if key in pool.kwargs}, channels)

    def on_new_events(self, name: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) whenever log ``name`` has new events."""
        self._callbacks[name].append(callback)

    async def run(self, stop: asyncio.Event, first_retry: float = 0.2, longest_retry: float = 5.0) -> None:
        """Listen until ``stop``; a lost connection is made again with backoff."""
        backoff = Backoff(first_retry, longest_retry)
        while not stop.is_set():
            try:
                await self._listen(stop)
                backoff = Backoff(first_retry, longest_retry)
            except (psycopg.OperationalError, OSError) as error:
                log.warning("listening for new events failed (%s); again in %.1fs", error, backoff.delay)
            finally:
                self.listening = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff.next())

    async def _listen(self, stop: asyncio.Event) -> None:
        async with await psycopg.AsyncConnection.connect(**self.connection, autocommit=True) as connection:
            by_channel: dict[str, list[str]] = {}
            for name, channel in self.channels.items():
                by_channel.setdefault(channel, []).append(name)
            for channel in by_channel:
                await connection.execute(SQL("LISTEN {0}").format(Identifier(channel)))
            self.listening = True
            for name in self.channels:
                self._wake(name)  # whatever was recorded while nobody listened
            hearing = asyncio.ensure_future(self._hear(connection, by_channel))
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({hearing, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                hearing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await hearing  # raises what broke the connection, if it broke

    async def _hear(self, connection: psycopg.AsyncConnection[Any], by_channel: dict[str, list[str]]) -> None:
        async for channel in notified_channels(connection):
            for name in by_channel.get(channel, ()):
                self._wake(name)

    def _wake(self, name: str) -> None:
        for callback in self._callbacks[name]:
            callback()


IDLE_WAKE_SECONDS = 60.0
"""While waiting for a notification, wake this often only (psycopg's own ``notifies()`` wakes ten times a
second to check for interrupts: in an idle process that is most of what it does)."""


async def notified_channels(connection: psycopg.AsyncConnection[Any]) -> AsyncIterator[str]:
    """The channel of each ``NOTIFY`` the connection receives, until it breaks (raises then)."""
    while True:
        received = await connection.wait(generators.notifies(connection.pgconn), interval=IDLE_WAKE_SECONDS)
        for notification in received:
            yield notification.relname.decode()
