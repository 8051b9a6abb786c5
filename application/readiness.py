"""Readiness: named dependency checks, run concurrently off the event loop, bounded and cached.

Each check is a plain callable answering ``True`` when its dependency can serve (a store
query, a Redis ``PING``, the broker connection's state). A probe runs them all at once, each
in its own daemon thread, waits at most ``timeout`` seconds, and counts a check that has not
answered by then as failed. A check still running from an earlier probe (a hung dependency)
is not started again: the new probe waits on the same run, so a hung dependency holds one
thread, never one per probe. The answer is cached for ``ttl`` seconds and concurrent probes
share one evaluation, so probes cannot load a dependency however often they come.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from time import monotonic

log = logging.getLogger(__name__)

Check = Callable[[], bool]


class Readiness:
    """Whether this process's dependencies answer now (cached ``ttl`` seconds)."""

    def __init__(self, checks: Callable[[], Mapping[str, Check]], timeout: float = 1.0, ttl: float = 1.0,
                 clock: Callable[[], float] = monotonic) -> None:
        self.checks = checks
        """The checks by name, asked for on each evaluation (the composition root may add some late)."""
        self.timeout = timeout
        self.ttl = ttl
        self.clock = clock
        self._answer: tuple[float, dict[str, bool]] | None = None
        self._running: dict[str, asyncio.Future[bool]] = {}
        self._lock: asyncio.Lock | None = None

    async def check(self) -> dict[str, bool]:
        """Each check's result: a fresh evaluation at most every ``ttl`` seconds."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._answer is None or self.clock() - self._answer[0] >= self.ttl:
                self._answer = (self.clock(), await self._evaluate())
            return dict(self._answer[1])

    async def _evaluate(self) -> dict[str, bool]:
        checks = dict(self.checks())
        runs = {name: self._start(name, check) for name, check in checks.items()}
        if runs:
            await asyncio.wait(runs.values(), timeout=self.timeout)
        results = {name: run.done() and run.result() for name, run in runs.items()}
        for name, passed in results.items():
            if not passed:
                log.warning("readiness check %s failed%s", name, "" if runs[name].done() else " (timed out)")
        return results

    def _start(self, name: str, check: Check) -> asyncio.Future[bool]:
        running = self._running.get(name)
        if running is not None and not running.done():
            return running  # still hung from an earlier probe: wait on it, do not pile up threads
        self._running[name] = future = _in_thread(name, check)
        return future


def _in_thread(name: str, check: Check) -> asyncio.Future[bool]:
    """Run ``check`` in a daemon thread (a hung one never blocks the process's exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bool] = loop.create_future()

    def run() -> None:
        passed = passes(check)
        try:
            loop.call_soon_threadsafe(_settle, future, passed)
        except RuntimeError:  # the loop closed while the check hung
            pass

    threading.Thread(target=run, name=f"readiness-{name}", daemon=True).start()
    return future


def _settle(future: asyncio.Future[bool], passed: bool) -> None:
    if not future.done():
        future.set_result(passed)


def passes(check: Check) -> bool:
    """Whether ``check`` answers true; raising counts as failing."""
    try:
        return bool(check())
    except Exception as error:  # noqa: BLE001 - a failing dependency means not ready, whatever it raised
        log.debug("readiness check raised %r", error)
        return False
