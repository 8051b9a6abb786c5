"""What this process knows of the read models' changes, told by the view store (``ViewStore.watch``):
a stamp per view key, each projection version's position per leader, and the waiters for either.

The read side uses it three ways: a cached view is served only while its key's stamp is the one it
was read under (so a cache never outlives a change), a read-your-writes wait (``X-Min-Position``)
and a bounded wait for a decision (``Prefer: wait``) or a stream of changes (server-sent events) wake
when the change is told instead of polling the store. While the feed is down (``live`` is false) the
caches are bypassed and waits fall back to reading the store.

The store tells from any thread (the embedded runner's, or the Redis subscriber's); waiters are
plain threads (``wait``) or coroutines (``wait_async``) on any event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from projections.store import ViewChange

POLL_SECONDS = 0.01
"""How often a wait reads the store while the change feed is down."""
POSITIONS = "positions"
"""The topic of waiters on projection positions (any change may move them)."""


class ViewChanges:
    """A ``ChangeWatcher``: stamps, positions and waiters, kept current by the store's change feed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._count = 0
        self._reset_at = 0
        self._stamps: dict[tuple[str, str], int] = {}
        self._positions: dict[tuple[str, int, str], int] = {}
        self._waiters: dict[Hashable, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}
        self.live = False
        """Whether changes are being told now (a cache may be trusted)."""

    # ChangeWatcher ---------------------------------------------------------------------------------

    def changed(self, change: ViewChange) -> None:
        with self._lock:
            self._count += 1
            for key in change.keys:
                self._stamps[(change.name, key)] = self._count
            at = (change.name, change.version, change.leader)
            self._positions[at] = max(self._positions.get(at, 0), change.position)
            woken = self._take([*((change.name, key) for key in change.keys), POSITIONS])
            self._changed.notify_all()
        _wake(woken)

    def reset(self) -> None:
        with self._lock:
            self._count += 1
            self._reset_at = self._count
            self._stamps.clear()
            self._positions.clear()
            self.live = True
            woken = self._take(list(self._waiters))
            self._changed.notify_all()
        _wake(woken)

    def lost(self) -> None:
        with self._lock:
            self.live = False
            woken = self._take(list(self._waiters))
            self._changed.notify_all()
        _wake(woken)

    # Reading ---------------------------------------------------------------------------------------

    def stamp(self, name: str, key: str) -> int | None:
        """The stamp of view ``key`` of projection ``name`` now (``None``: the feed is down)."""
        with self._lock:
            if not self.live:
                return None
            return max(self._reset_at, self._stamps.get((name, key), 0))

    def position(self, name: str, version: int, leader: str) -> int | None:
        """The position of ``leader`` in that projection version, as last told (``None``: not told yet)."""
        with self._lock:
            return self._positions.get((name, version, leader))

    def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Block (this thread) until ``condition()`` holds, re-checked at every change (every 10 ms while
        the feed is down); False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = self._count
            if condition():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._lock:
                if self._count == seen:
                    self._changed.wait(remaining if self.live else min(remaining, POLL_SECONDS))

    async def wait_async(self, condition: Callable[[], bool | Awaitable[bool]], timeout: float,
                         topic: Hashable = POSITIONS) -> bool:
        """Wait (this coroutine) until ``condition()`` holds (it may be a coroutine function), re-checked
        whenever ``topic`` changes (a view key as ``(projection, key)``, or ``POSITIONS``), the feed resets,
        or every 10 ms while the feed is down; False on timeout."""
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        while True:
            future: asyncio.Future[None] = loop.create_future()
            with self._lock:
                self._waiters.setdefault(topic, []).append((loop, future))
            held = condition()
            if inspect.isawaitable(held):
                held = await held
            if held:
                self._forget(topic, future)
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._forget(topic, future)
                return False
            try:
                await asyncio.wait_for(future, remaining if self.live else min(remaining, POLL_SECONDS))
            except TimeoutError:
                self._forget(topic, future)

    def _take(self, topics: list[Hashable]) -> list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]:
        woken: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        for topic in topics:
            woken.extend(self._waiters.pop(topic, ()))
        return woken

    def _forget(self, topic: Hashable, future: asyncio.Future[Any]) -> None:
        with self._lock:
            waiters = self._waiters.get(topic, [])
            self._waiters[topic] = [(loop, f) for loop, f in waiters if f is not future]
            if not self._waiters[topic]:
                del self._waiters[topic]


def _wake(woken: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
    for loop, future in woken:
        loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
