"""Server-sent event streams: how long one lasts, how often it says it is alive, how it is sent, and the
stream of a view's changes the API and the console share."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from litestar import Request
from litestar.datastructures import ResponseHeader
from litestar.response import ServerSentEventMessage

STREAM_SECONDS = 300.0
"""How long a stream lasts before it ends (the client reconnects); ``create_app(stream_seconds=…)`` sets it."""
KEEP_ALIVE_SECONDS = 15.0
"""How long a stream may go without sending: a comment then keeps the connection open."""
STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
"""Never cached, and never buffered by the gateway (nginx): each event goes out as it happens."""
STREAM_RESPONSE_HEADERS = [
    ResponseHeader(name="Cache-Control", documentation_only=True, example="no-store",
                   description="Events are never cached"),
    ResponseHeader(name="X-Accel-Buffering", documentation_only=True, example="no",
                   description="Tells a buffering proxy (nginx) to pass each event on as it comes")]
"""``STREAM_HEADERS`` as the OpenAPI document declares them."""

KEEP_ALIVE = ServerSentEventMessage(comment="keep-alive", data=None)
"""A comment that keeps the connection open (and no data line: nothing for a client to dispatch)."""

T = TypeVar("T")


class Quiet:
    """Nothing happened for a while: time for a keep-alive comment."""


QUIET = Quiet()


async def changes(seen: int | None, changed: Callable[[int | None, float], Awaitable[int | None]],
                  seconds: float = STREAM_SECONDS) -> AsyncIterator[int | Quiet | None]:
    """What ``changed`` says a view moved to each time it moves past what was seen, or ``QUIET`` when it did not
    within 15 s; for ``seconds`` (5 minutes)."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        now = await changed(seen, min(KEEP_ALIVE_SECONDS, remaining))
        if now == seen:
            yield QUIET
            continue
        seen = now
        yield now


async def change_events(event: str, seen: int | None, changed: Callable[[int | None, float], Awaitable[int | None]],
                        data: Callable[[int | None], Awaitable[str]],
                        seconds: float = STREAM_SECONDS) -> AsyncIterator[ServerSentEventMessage]:
    """``event`` (``data``: what ``data`` says of the change) each time ``changed`` says a view moved past what
    was seen, a keep-alive comment when it did not within 15 s; for ``seconds`` (5 minutes)."""
    async for now in changes(seen, changed, seconds):
        if isinstance(now, Quiet):
            yield KEEP_ALIVE
        else:
            yield ServerSentEventMessage(event=event, data=await data(now), id=None if now is None else str(now))


async def relayed(events: AsyncIterator[T], keep_alive: float = KEEP_ALIVE_SECONDS) -> AsyncIterator[T | Quiet]:
    """``events`` as they come, and ``QUIET`` whenever none came for ``keep_alive`` seconds (a stream read from
    elsewhere that says nothing for a while: the relay still says it is alive). Ends when ``events`` does,
    raising what it raised."""
    queue: asyncio.Queue[tuple[bool, T | None]] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in events:
                await queue.put((False, event))
        finally:
            await queue.put((True, None))

    pumping = asyncio.create_task(pump())
    try:
        while True:
            try:
                ended, event = await asyncio.wait_for(queue.get(), keep_alive)
            except TimeoutError:
                yield QUIET
                continue
            if ended:
                await pumping  # raises what the events raised
                return
            yield event  # type: ignore[misc]
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pumping


def stream_seconds(request: Request[Any, Any, Any]) -> float:
    """How long this app's streams last."""
    return float(request.app.state.get("stream_seconds", STREAM_SECONDS))
