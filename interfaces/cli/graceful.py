"""How a ``clinic`` server process stops on SIGTERM/SIGINT: readiness 503, a drain, then the port closes.

One mechanism for every server: ``clinic run <context>`` (api, all), ``clinic run auth`` and ``clinic serve``.
Each sets a readiness check to ``not stop.is_set()`` (``accepting``); after the signal the process goes on
serving for ``CLINIC_DRAIN_SECONDS`` (:func:`drain`) so the load balancers that follow readiness stop
sending before the port closes, then in-flight requests get uvicorn's graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import uvicorn
from uvicorn.loops.auto import auto_loop_factory

log = logging.getLogger("clinic.service")
T = TypeVar("T")
GRACE_SECONDS = 5
"""How long in-flight HTTP requests (and idle keep-alive clients) get to finish once the port closes."""


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on the event loop ``uvicorn.run`` would pick (``loop="auto"``: uvloop
    when installed, else asyncio's), so every server process serves on the same loop."""
    with asyncio.Runner(loop_factory=auto_loop_factory(use_subprocess=False)) as runner:
        return runner.run(main)


class Server(uvicorn.Server):
    """uvicorn without its own signal handlers (the process shuts down in its own order), and ticking once a
    second instead of ten times: uvicorn's tick refreshes the ``Date`` header (to the second) and notices
    ``should_exit``; this one wakes at once when ``should_exit`` is set, so an idle process sleeps."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    @property
    def should_exit(self) -> bool:
        return self.__dict__.get("_should_exit", False)

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self.__dict__["_should_exit"] = value
        exiting = self.__dict__.get("_exiting")
        if value and exiting is not None:
            exiting.set()

    async def main_loop(self) -> None:
        self.__dict__["_exiting"] = exiting = asyncio.Event()
        if self.should_exit:
            exiting.set()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + TICKS_PER_WAKE) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(exiting.wait(), timeout=TICK_SECONDS)
            should_exit = await self.on_tick(counter)


TICK_SECONDS = 1.0
TICKS_PER_WAKE = 10
"""uvicorn counts its ticks in tenths of a second (the ``Date`` header is refreshed every 10)."""


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call it inside the running loop)."""
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    return stop


async def drain(serving: list[asyncio.Task[None]], seconds: float) -> None:
    """Go on serving for ``seconds`` while readiness says 503 (or until a server ends by itself), so the load
    balancers that follow readiness (Kubernetes endpoints, an ingress) stop sending before the port closes."""
    if seconds > 0:
        log.info("draining: not ready, still serving for %.1f s", seconds)
        await asyncio.wait(serving, timeout=seconds)


async def until_stopped_or_failed(stop: asyncio.Event, tasks: Sequence[asyncio.Task[object]]) -> bool:
    """Wait for SIGTERM/SIGINT, or for a part to end on its own (a failure: exit non-zero)."""
    stopped = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    failed = [t for t in done if t is not stopped]
    for task in failed:
        log.error("%s ended unexpectedly: %r", task.get_name(), task.exception())
    return bool(failed)


async def serve_until_stopped(server: uvicorn.Server | Sequence[uvicorn.Server], stop: asyncio.Event,
                              drain_seconds: float) -> int:
    """Serve (on each of several servers, one app: its lifespan runs with the first) until ``stop``; then
    readiness is 503 (the caller's ``accepting`` check reads ``stop``), a drain, and the ports close. 0 after
    a signal, 1 if a server ended by itself."""
    servers = [server] if isinstance(server, uvicorn.Server) else list(server)
    for each in servers[1:]:
        if each.config.app is servers[0].config.app:
            # one app starts up and shuts down once, with the first server: two lifespans of one app would
            # leave its task group from another task than entered it ("Application shutdown failed")
            each.config.lifespan = "off"
    serving = [asyncio.create_task(each.serve(), name=f"http:{each.config.port}") for each in servers]
    failed = await until_stopped_or_failed(stop, serving)
    stop.set()  # readiness is false from here on
    if not failed:
        await drain(serving, drain_seconds)
    for each in servers:
        each.should_exit = True
    await asyncio.gather(*serving, return_exceptions=True)
    return 1 if failed else 0
