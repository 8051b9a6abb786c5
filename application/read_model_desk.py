"""The read models, for operators: each projection's serving version, position and lag per log, and rebuilds
started on request that run in this process, each on a thread of its own, with its last progress for whoever
follows it. ``clinic projections status`` reads the same status; the API (``/v1/read-models``) and the console
start and follow rebuilds here. Each change of a rebuild wakes the coroutines waiting on ``changed``, told
from the rebuild's thread to their event loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from application.idempotency import IdempotencyKey
from domain.base import NotFoundError
from domain.receipts import IdempotencyKeyReusedError
from projections.catalog import ALL_PROJECTIONS, BY_NAME
from projections.quarantine import QUARANTINE_KEY
from projections.rebuild import Progress, rebuild
from projections.runner import LeaderStatus, ProjectionRunner
from projections.store import ViewStore

log = logging.getLogger(__name__)
KEYS_KEPT = 1000
"""Idempotency keys of rebuild requests remembered (a rebuild is asked for a few times a year)."""
OBSERVE_TIMEOUT = 0.8
"""How long a scrape waits for the read models' gauges (below a scrape's timeout, as readiness is)."""


class ProgressObserver(Protocol):
    """Told each projection's position and lag, and its quarantined events (the composition root's metrics)."""

    def projection_progress(self, projection: str, leader: str, position: int, lag_events: int) -> None: ...

    def projection_lag(self, projection: str, seconds: float) -> None: ...

    def projection_quarantined_events(self, projection: str, count: int) -> None: ...


class UnknownReadModelError(NotFoundError):
    """No projection of that name."""


@dataclass(frozen=True)
class LogPosition:
    """How far a projection's serving version is into one leader's log."""

    position: int
    head: int
    lag: int
    lag_seconds: float
    """How long ago the oldest event not yet applied was recorded (0.0: none): how stale the view is."""


@dataclass(frozen=True)
class RebuildUnderWay:
    """A new version being built beside the serving one (by this process or any other)."""

    version: int
    code_version: int
    lag: int
    """Events still to apply to it."""


@dataclass(frozen=True)
class ReadModelStatus:
    """One projection: the version readers use, the code's, its position in each log it follows."""

    name: str
    serving_version: int
    code_version: int
    lag: int
    lag_seconds: float
    leaders: dict[str, LogPosition]
    rebuild: RebuildUnderWay | None


@dataclass
class Rebuild:
    """One rebuild started here: its last progress, and how it ended (``None``: running)."""

    name: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    progress: Progress | None = None
    outcome: str | None = None
    """``done``, or ``failed: <why>`` (the next rebuild resumes it)."""

    @property
    def percent(self) -> int:
        if self.outcome == "done":
            return 100
        if self.progress is None or not self.progress.total:
            return 0
        return min(100, int(100 * self.progress.done / self.progress.total))


@dataclass
class ReadModelDesk:
    """The read models of ``apps``' logs kept in ``store``: their status, and the rebuilds started here (at
    most one of each projection at a time)."""

    apps: Mapping[str, Any]
    store: ViewStore
    running: dict[str, Rebuild] = field(default_factory=dict)
    keys: OrderedDict[tuple[str, str], tuple[str, Rebuild]] = field(default_factory=OrderedDict)
    """The idempotency keys rebuilds were started with (the last ``KEYS_KEPT``), by (caller, key): what
    each asked for, and the rebuild it started. In memory: the projection worker is one process."""
    changes: int = 0
    """How many times a rebuild has moved or ended (what a waiter compares with what it saw)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _observing: asyncio.Future[None] | None = None
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = field(default_factory=list)

    def status(self) -> dict[str, ReadModelStatus]:
        """Each projection's serving version, its position and lag per leader, and any rebuild under way."""
        now = datetime.now(UTC)
        report = {}
        for name, state in ProjectionRunner(self.apps, self.store, ALL_PROJECTIONS).status().items():
            leaders = {leader: LogPosition(s.position, s.head, s.lag, self._lag_seconds(leader, s, now))
                       for leader, s in state.leaders.items()}
            report[name] = ReadModelStatus(name, state.version, BY_NAME[name].version, state.lag,
                                           max(one.lag_seconds for one in leaders.values()), leaders,
                                           self._under_way(name, state.leaders))
        return report

    def observe(self, observer: ProgressObserver) -> None:
        """Tell ``observer`` each projection's position and lag per leader, how long ago the oldest event it
        has not applied was recorded, and how many events it quarantined. Reads only: it answers while the
        projections cannot write (a key store refusing writes, a long catch-up), when the lag matters most."""
        for name, status in self.status().items():
            for leader, log_position in status.leaders.items():
                observer.projection_progress(name, leader, log_position.position, log_position.lag)
            observer.projection_lag(name, status.lag_seconds)
            quarantined = self.store.list_items(name, status.serving_version, QUARANTINE_KEY)
            observer.projection_quarantined_events(name, len(quarantined))

    async def observed(self, observer: ProgressObserver, timeout: float = OBSERVE_TIMEOUT) -> None:
        """:meth:`observe` on a thread, waited for at most ``timeout`` seconds (a scrape never hangs on a stuck
        store: the gauges keep their last values), one at a time; a failure is logged."""
        if self._observing is None or self._observing.done():
            self._observing = asyncio.ensure_future(asyncio.to_thread(self.observe, observer))
            self._observing.add_done_callback(_retrieved)
        try:
            await asyncio.wait_for(asyncio.shield(self._observing), timeout)
        except TimeoutError:
            log.warning("the read models' gauges took over %.1fs; they keep their last values", timeout)
        except Exception as error:  # noqa: BLE001 - a scrape answers whatever its dependencies do
            log.warning("could not observe the read models: %r", error)

    def start(self, name: str, key: IdempotencyKey | None = None) -> Rebuild:
        """Rebuild ``name`` in the background, unless a rebuild of it started here is under way (that one is
        returned: starting twice is one rebuild), or ``key`` started one before (that one is returned;
        ``IdempotencyKeyReusedError`` if the key asked for something else)."""
        projection = self.projection(name)
        with self._lock:
            if key is not None and (key.scope, key.key) in self.keys:
                asked, earlier = self.keys[(key.scope, key.key)]
                if asked != key.request:
                    raise IdempotencyKeyReusedError(f"idempotency key {key.key!r} was used for another request")
                return earlier
            if name in self.running and self.running[name].outcome is None:
                return self._keep(key, self.running[name])
            this = self.running[name] = self._keep(key, Rebuild(name))

        def moved(progress: Progress) -> None:
            this.progress = progress
            self._changed()

        def run() -> None:
            try:
                rebuild(self.apps, self.store, projection, on_progress=moved)
                this.outcome = "done"
            except Exception as error:  # noqa: BLE001 - told to whoever follows it; the next rebuild resumes it
                log.exception("rebuild of %s failed", name)
                this.outcome = f"failed: {error}"
            self._changed()

        self._changed()
        threading.Thread(target=run, name=f"rebuild-{name}", daemon=True).start()
        return this

    def _keep(self, key: IdempotencyKey | None, started: Rebuild) -> Rebuild:
        if key is not None:
            self.keys[(key.scope, key.key)] = (key.request, started)
            while len(self.keys) > KEYS_KEPT:
                self.keys.popitem(last=False)
        return started

    def of(self, name: str) -> Rebuild | None:
        """The last rebuild of ``name`` started here (running or ended), if any."""
        self.projection(name)
        with self._lock:
            return self.running.get(name)

    @staticmethod
    def projection(name: str) -> Any:
        if name not in BY_NAME:
            raise UnknownReadModelError(f"no read model {name!r}; there are {', '.join(BY_NAME)}")
        return BY_NAME[name]

    async def changed(self, seen: int, timeout: float) -> int:
        """``changes`` once it differs from ``seen`` (at once if it does), or after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self.changes != seen:
                return self.changes
            self._waiters.append((loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove((loop, future))
        return self.changes

    async def moves(self, name: str, seconds: float, keep_alive: float) -> AsyncIterator[Rebuild | None]:
        """The last rebuild of ``name`` started here each time it moves, until it has ended or ``seconds`` have
        passed; ``None`` when it did not move for ``keep_alive`` seconds (or none was started)."""
        self.projection(name)
        deadline, seen = time.monotonic() + seconds, -1
        while (remaining := deadline - time.monotonic()) > 0:
            now = await self.changed(seen, min(keep_alive, remaining))
            last = self.of(name)
            if now == seen or last is None:
                yield None
                continue
            seen = now
            yield last
            if last.outcome is not None:
                return

    def _changed(self) -> None:
        with self._lock:
            self.changes += 1
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future)

    def _lag_seconds(self, leader: str, state: LeaderStatus, now: datetime) -> float:
        if state.lag == 0:
            return 0.0
        app = self.apps[leader]
        pending = app.recorder.select_notifications(start=state.position, limit=1, inclusive_of_start=False)
        if not pending:
            return 0.0
        return round(max((now - app.mapper.to_domain_event(pending[0]).timestamp).total_seconds(), 0.0), 3)

    def _under_way(self, name: str, leaders: dict[str, LeaderStatus]) -> RebuildUnderWay | None:
        target = self.store.rebuild_target(name)
        if target is None:
            return None
        lag = sum(max(s.head - self.store.position(name, target.version, leader), 0) for leader, s in leaders.items())
        return RebuildUnderWay(target.version, target.code_version, lag)


def _retrieved(future: asyncio.Future[None]) -> None:
    """Mark an observation's failure as seen (the scrape that waited for it may have stopped waiting)."""
    if not future.cancelled():
        future.exception()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
