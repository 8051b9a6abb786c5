"""The rebuilds of read models an operator started from the console: each on a thread of its own, with its
last progress, so the page can follow it to the end: each change of any rebuild wakes the pages waiting
on ``Rebuilds.changed``, told from the rebuild's thread to their event loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass, field

from application.clinic import Clinic
from application.read_models import ReadModels
from projections.catalog import BY_NAME
from projections.rebuild import Progress, rebuild

log = logging.getLogger(__name__)


@dataclass
class Rebuild:
    """One rebuild started from the console: its last progress, and how it ended (``None``: running)."""

    progress: Progress | None = None
    outcome: str | None = None

    @property
    def percent(self) -> int:
        if self.outcome == "done":
            return 100
        if self.progress is None or not self.progress.total:
            return 0
        return min(100, int(100 * self.progress.done / self.progress.total))


@dataclass
class Rebuilds:
    """The rebuilds this process started, by projection; at most one of each at a time."""

    running: dict[str, Rebuild] = field(default_factory=dict)
    changes: int = 0
    """How many times a rebuild has moved or ended (what a waiting page compares with what it saw)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = field(default_factory=list)

    def start(self, clinic: Clinic, name: str) -> None:
        """Rebuild ``name`` in the background, unless a rebuild of it is under way (the page follows that one)."""
        with self._lock:
            if name in self.running and self.running[name].outcome is None:
                return  # one is under way: the page follows it
            this = self.running[name] = Rebuild()
        apps, store = {app.name: app for app in clinic.apps()}, clinic.require(ReadModels).store

        def moved(progress: Progress) -> None:
            this.progress = progress
            self._changed()

        def run() -> None:
            try:
                rebuild(apps, store, BY_NAME[name], on_progress=moved)
                this.outcome = "done"
            except Exception as error:  # noqa: BLE001 - shown on the page; the next rebuild resumes it
                log.exception("console rebuild of %s failed", name)
                this.outcome = f"failed: {error}"
            self._changed()

        self._changed()
        threading.Thread(target=run, name=f"console-rebuild-{name}", daemon=True).start()

    def of(self, name: str) -> Rebuild | None:
        with self._lock:
            return self.running.get(name)

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

    def _changed(self) -> None:
        with self._lock:
            self.changes += 1
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
