"""The projection worker's loop (``follow_projections``) in a thread of its own, for tests that need a
live projection runner beside other threads."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from application.services import follow_projections
from projections.runner import ProjectionRunner


class LiveProjections:
    """``follow_projections(runner, apps)`` on its own event loop and thread, until :meth:`stop`."""

    def __init__(self, runner: ProjectionRunner, apps: dict[str, Any], poll_seconds: float = 0.01) -> None:
        self.runner, self.apps, self.poll_seconds = runner, apps, poll_seconds
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> LiveProjections:
        self.thread.start()
        self._started.wait(5)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout=10)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._started.set()
        await follow_projections(self.runner, self.apps, self._stop, poll_seconds=self.poll_seconds)
