"""The rebuilds of read models an operator started from the console: each on a thread of its own, with its
last progress, so the page can follow it to the end."""

from __future__ import annotations

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
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, clinic: Clinic, name: str) -> None:
        """Rebuild ``name`` in the background, unless a rebuild of it is under way (the page follows that one)."""
        with self._lock:
            if name in self.running and self.running[name].outcome is None:
                return  # one is under way: the page follows it
            this = self.running[name] = Rebuild()
        apps, store = {app.name: app for app in clinic.apps()}, clinic.require(ReadModels).store

        def run() -> None:
            try:
                rebuild(apps, store, BY_NAME[name], on_progress=lambda progress: setattr(this, "progress", progress))
                this.outcome = "done"
            except Exception as error:  # noqa: BLE001 - shown on the page; the next rebuild resumes it
                log.exception("console rebuild of %s failed", name)
                this.outcome = f"failed: {error}"

        threading.Thread(target=run, name=f"console-rebuild-{name}", daemon=True).start()

    def of(self, name: str) -> Rebuild | None:
        with self._lock:
            return self.running.get(name)
