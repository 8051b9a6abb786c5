"""Readiness: named dependency checks, run concurrently off the event loop, bounded and cached.

Each check is a plain callable answering ``True`` when its dependency can serve (a store
query, a Redis ``PING``, the broker connection's state). An evaluation runs them all at once,
each in its own daemon thread, waits at most ``timeout`` seconds, and counts a check that has not
answered by then as failed; so a probe answers within ``timeout`` whatever is down. A check still
running from an earlier evaluation (a hung dependency) is not started again: the new one waits on
the same run, so a hung dependency holds one thread, never one per probe. The answer is stamped
when it is known and kept for ``ttl`` seconds; probes arriving during an evaluation share it, so
probes cannot load a dependency however often they come.

A *degradable* check is of derived state (the read models' Redis): failing, it is reported and the
process answers "degraded" but stays ready, since what it writes does not depend on it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Collection, Mapping
from time import monotonic
from typing import Literal

log = logging.getLogger(__name__)

Check = Callable[[], bool]
Status = Literal["ok", "degraded", "unavailable"]


class Readiness:
    """Whether this process's dependencies answer now (kept ``ttl`` seconds)."""

    def __init__(self, checks: Callable[[], Mapping[str, Check]], timeout: float = 0.8, ttl: float = 1.0,
                 clock: Callable[[], float] = monotonic,
                 degradable: Callable[[], Collection[str]] = frozenset) -> None:
        self.checks = checks
        """The checks by name, asked for on each evaluation (the composition root may add some late)."""
        self.timeout = timeout
        """How long an evaluation waits for its checks: below the probe's own timeout (Kubernetes: 1 s)."""
        self.ttl = ttl
        self.clock = clock
        self.degradable = degradable
        """The names of checks whose failure degrades this process without making it unready."""
        self._answer: tuple[float, dict[str, bool]] | None = None
        self._evaluation: asyncio.Future[dict[str, bool]] | None = None
        self._running: dict[str, asyncio.Future[bool]] = {}

    async def check(self) -> dict[str, bool]:
        """Each check's result: the last answer if younger than ``ttl``, else the evaluation under way
        (one is started if none is)."""
        if self._answer is not None and self.clock() - self._answer[0] < self.ttl:
            return dict(self._answer[1])
        if self._evaluation is None or self._evaluation.done():
            self._evaluation = asyncio.ensure_future(self._evaluate())
        return dict(await asyncio.shield(self._evaluation))

    def status(self, results: Mapping[str, bool]) -> Status:
        """``ok``; ``degraded`` (only degradable checks failed: still ready); or ``unavailable``."""
        failed = {name for name, passed in results.items() if not passed}
        if not failed:
            return "ok"
        return "degraded" if failed <= set(self.degradable()) else "unavailable"

    async def _evaluate(self) -> dict[str, bool]:
        checks = dict(self.checks())
        runs = {name: self._start(name, check) for name, check in checks.items()}
        if runs:
            await asyncio.wait(runs.values(), timeout=self.timeout)
        results = {name: run.done() and run.result() for name, run in runs.items()}
        for name, passed in results.items():
            if not passed:
                log.warning("readiness check %s failed%s", name, "" if runs[name].done() else " (timed out)")
        self._answer = (self.clock(), results)  # stamped when known, so it is kept a whole ttl
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
