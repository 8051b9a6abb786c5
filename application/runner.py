"""Runs the system's followers in one background thread of this process.

Leaders prompt the runner when they record events; the runner's thread then has
each follower pull from its leaders' notification logs until no follower makes
progress, and ticks the booking deadlines. Unlike the library's single-threaded
runners, no prompt is lost when several request threads write at once (a prompt
only sets a flag the thread re-checks), and request threads never run policies.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from eventsourcing.application import Application
from eventsourcing.system import Follower, Leader, RecordingEvent, RecordingEventReceiver, System

log = logging.getLogger(__name__)


class RunnerStalledError(RuntimeError):
    """The followers did not catch up within the time allowed."""


class EmbeddedRunner(RecordingEventReceiver[Any]):
    """Delivers every leader's events to its followers, in order, exactly once."""

    def __init__(
        self,
        system: System,
        apps: Mapping[str, Application[Any]],
        tick_seconds: float = 0.5,
        on_tick: Callable[[], object] | None = None,
        catch_up: Callable[[], int] | None = None,
    ) -> None:
        self.system = system
        self.apps = apps
        self.tick_seconds = tick_seconds
        self.on_tick = on_tick
        self.catch_up = catch_up
        """Also drained on every pass: the projections (returns how many events they read)."""
        self.last_error: BaseException | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._idle = threading.Condition()
        self._requested_generation = 0
        self._idle_generation = 0
        self._thread = threading.Thread(target=self._run, name="clinic-runner", daemon=True)

    def start(self) -> None:
        for leader_name, follower_name in self.system.edges:
            follower = self._follower(follower_name)
            follower.follow(leader_name, self.apps[leader_name].notification_log)
        for leader_name in self.system.leaders:
            leader = self.apps[leader_name]
            assert isinstance(leader, Leader)
            leader.lead(self)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    @property
    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def receive_recording_event(self, new_recording_event: RecordingEvent[Any]) -> None:
        self._wake.set()

    def wait_until_idle(self, timeout: float = 10.0) -> None:
        """Block until every event recorded before this call has been processed."""
        with self._idle:
            self._requested_generation += 1
            target = self._requested_generation
        self._wake.set()
        with self._idle:
            if not self._idle.wait_for(lambda: self._idle_generation >= target, timeout):
                raise RunnerStalledError(f"followers still busy after {timeout}s: {self.last_error!r}")

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.tick_seconds)
            self._wake.clear()
            with self._idle:
                generation = self._requested_generation
            try:
                self._drain()
                if self.on_tick is not None:
                    self.on_tick()
                    self._drain()
            except Exception as error:  # noqa: BLE001 - keep following; the error is logged and kept
                self.last_error = error
                log.exception("runner pass failed; retrying on the next tick")
                continue
            self.last_error = None
            with self._idle:
                self._idle_generation = max(self._idle_generation, generation)
                self._idle.notify_all()

    def _drain(self) -> None:
        """Let every follower pull until a whole pass processes nothing new."""
        progressed = True
        while progressed and not self._stopping.is_set():
            progressed = False
            for leader_name, follower_name in self.system.edges:
                follower = self._follower(follower_name)
                before = follower.recorder.max_tracking_id(leader_name)
                follower.pull_and_process(leader_name)
                progressed |= follower.recorder.max_tracking_id(leader_name) != before
            if self.catch_up is not None:
                progressed |= self.catch_up() > 0

    def _follower(self, name: str) -> Follower[Any]:
        follower = self.apps[name]
        assert isinstance(follower, Follower)
        return follower
