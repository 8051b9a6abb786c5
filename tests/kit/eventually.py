"""Waiting for a condition in tests: poll it until it holds or a deadline passes.

There is one deadline loop, with two faces: ``eventually`` for plain code (threads, subprocesses,
servers) and ``await eventually_async(...)`` inside a running event loop, where a blocking poll
would starve the very tasks the condition waits for. A bare ``sleep`` never stands in for
synchronisation: the sleep between two polls is bounded by the deadline, and a test that waits
too long fails with what it was waiting for.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterator
from typing import Any

DEFAULT_TIMEOUT = 30.0
DEFAULT_INTERVAL = 0.05


def _pauses(timeout: float, interval: float) -> Iterator[float]:
    """The pauses between polls: each at most ``interval``, none past the deadline; ends at the deadline."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        yield min(interval, left)


def _timed_out(timeout: float, what: str, condition: Callable[[], Any], last: Any) -> AssertionError:
    return AssertionError(f"timed out after {timeout}s waiting for {what or getattr(condition, '__name__', condition)}"
                          f" (last value: {last!r})")


def eventually(condition: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT, what: str = "",
               interval: float = DEFAULT_INTERVAL) -> Any:
    """Poll ``condition`` until it returns a truthy value and return that value; fail after ``timeout`` s.

    The condition is tried once more at the deadline, so a slow machine never fails a test whose
    condition became true during the last pause.
    """
    value = condition()
    for pause in _pauses(timeout, interval):
        if value:
            return value
        time.sleep(pause)
        value = condition()
    if value:
        return value
    raise _timed_out(timeout, what, condition, value)


async def eventually_async(condition: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT, what: str = "",
                           interval: float = DEFAULT_INTERVAL / 2) -> Any:
    """``eventually`` inside an event loop: ``condition`` may be sync or return an awaitable."""

    async def check() -> Any:
        value = condition()
        return await value if inspect.isawaitable(value) else value

    value = await check()
    for pause in _pauses(timeout, interval):
        if value:
            return value
        await asyncio.sleep(pause)
        value = await check()
    if value:
        return value
    raise _timed_out(timeout, what, condition, value)
