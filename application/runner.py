"""The in-process transport of the delivery engine: every follower of this process fed from its
leaders' logs, in order, a batch at a time, in one background thread.

Leaders tell the runner what they record (``receive_recording_event``: the new head of their log);
the runner's thread then has each follower that is behind read up to ``batch_size`` notifications
of the events it handles and hand them to the delivery engine (``process_managers/delivery.py``),
which records everything the batch causes, and its tracking position, in one transaction. The
positions are kept in memory (read from the followers' tracking records once, at start), so a
follower that is up to date costs nothing. A batch whose event fails is recorded up to it; the
runner offers the rest again at the next tick, from the failed event on. The projections are
caught up after each round, and the saga timer (``on_tick``) runs every ``tick_seconds``. Request
threads never run policies, and no prompt is lost when several of them record at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import Tracking
from eventsourcing.system import Follower, Leader, RecordingEvent, RecordingEventReceiver, System

from process_managers.base import Job
from process_managers.delivery import Outcome, deliver_batch

log = logging.getLogger(__name__)
DEFAULT_BATCH_SIZE = 100


class RunnerStalledError(RuntimeError):
    """The followers did not catch up within the time allowed."""


class EmbeddedRunner(RecordingEventReceiver[Any]):
    """Delivers every leader's events to its followers, in order, exactly once, in batches."""

    def __init__(
        self,
        system: System,
        apps: Mapping[str, Application[Any]],
        tick_seconds: float = 0.5,
        on_tick: Callable[[], object] | None = None,
        catch_up: Callable[[], int] | None = None,
        topics: Mapping[tuple[str, str], Collection[str]] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        timers: Collection[TimerThread] = (),
    ) -> None:
        self.system = system
        self.apps = apps
        self.tick_seconds = tick_seconds
        self.on_tick = on_tick
        self.catch_up = catch_up
        """Also run after every round: the projections (returns how many events they read)."""
        self.topics = {edge: frozenset(handled) for edge, handled in (topics or {}).items()}
        """Per ``(leader, follower)``: the topics the follower handles (an edge not here: every topic)."""
        self.batch_size = batch_size
        self.timers = tuple(timers)
        """Timers that may wait on the outside world (webhook sends), each on a thread of its own."""
        self.last_error: BaseException | None = None
        self.batches = 0
        """Batches delivered (tests and benchmarks read it)."""
        self._positions: dict[tuple[str, str], int] = {}
        self._heads: dict[str, int] = {}
        self._lock = threading.Lock()
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
            self._positions[(leader_name, follower_name)] = follower.recorder.max_tracking_id(leader_name) or 0
        for name, app in self.apps.items():
            self._heads[name] = app.recorder.max_notification_id() or 0
            if isinstance(app, Leader):
                app.lead(self)
        self._thread.start()
        for timer in self.timers:
            timer.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for timer in self.timers:
            timer.stop()

    @property
    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def head(self, name: str) -> int:
        """The last notification id recorded in ``name``'s log, as this process knows it (every writer of
        an embedded store is in this process: no query)."""
        with self._lock:
            return self._heads.get(name, 0)

    def receive_recording_event(self, new_recording_event: RecordingEvent[Any]) -> None:
        if new_recording_event.recordings:
            head = new_recording_event.recordings[-1].notification.id
            with self._lock:
                name = new_recording_event.application_name
                self._heads[name] = max(self._heads.get(name, 0), head)
        self._wake.set()

    def wait_until_idle(self, timeout: float = 10.0) -> None:
        """Block until every event recorded before this call has been processed, and the timer has run
        (so deadlines due by now are compensated)."""
        with self._idle:
            self._requested_generation += 1
            target = self._requested_generation
        self._wake.set()
        with self._idle:
            if not self._idle.wait_for(lambda: self._idle_generation >= target, timeout):
                raise RunnerStalledError(f"followers still busy after {timeout}s: {self.last_error!r}")

    def _run(self) -> None:
        next_tick = time.monotonic() + self.tick_seconds
        while not self._stopping.is_set():
            self._wake.wait(max(next_tick - time.monotonic(), 0))
            self._wake.clear()
            with self._idle:
                generation = self._requested_generation
                asked = generation > self._idle_generation  # someone waits for a settled system: timer included
            try:
                self._drain()
                if self.on_tick is not None and (asked or time.monotonic() >= next_tick):
                    next_tick = time.monotonic() + self.tick_seconds
                    self.on_tick()
                    self._drain()
            except Exception as error:  # noqa: BLE001 - keep following; the error is logged and kept
                self.last_error = error
                log.exception("runner pass failed; retrying on the next tick")
                continue
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.tick_seconds
            with self._idle:
                self._idle_generation = max(self._idle_generation, generation)
                self._idle.notify_all()

    def _drain(self) -> None:
        """Let every follower that is behind take batches, and the projections catch up, until a whole
        round moves nothing."""
        failed: BaseException | None = None
        progressed = True
        while progressed and not self._stopping.is_set():
            progressed = False
            for leader_name, follower_name in self.system.edges:
                moved, error = self._follow(leader_name, follower_name)
                progressed |= moved
                failed = failed or error
            if self.catch_up is not None:
                progressed |= self.catch_up() > 0
        self.last_error = failed
        if failed is not None:
            log.error("an event failed; its follower tries it again on the next tick: %r", failed)

    def _follow(self, leader_name: str, follower_name: str) -> tuple[bool, BaseException | None]:
        """One batch of ``leader_name``'s log for ``follower_name``; whether its position moved, and the
        error of the event it stopped at (if one failed)."""
        edge = (leader_name, follower_name)
        start = self._positions[edge]
        with self._lock:
            behind = start < self._heads.get(leader_name, 0)
        if not behind:
            return False, None
        notifications = self.apps[leader_name].recorder.select_notifications(
            start=start, limit=self.batch_size, inclusive_of_start=False)
        if not notifications:
            return False, None
        follower = self._follower(follower_name)
        wanted = self.topics.get(edge)
        handled = [n for n in notifications if wanted is None or n.topic in wanted]
        mapper = follower.mappers[leader_name]
        jobs = [Job(mapper.to_domain_event(n), Tracking(leader_name, n.id)) for n in handled]
        results = deliver_batch(follower, jobs, exact=False, stop_at_failure=True) if jobs else []
        self.batches += bool(jobs)
        for notification, result in zip(handled, results, strict=True):
            if result.outcome in (Outcome.FAILED, Outcome.PENDING):
                self._positions[edge] = notification.id - 1
                return self._positions[edge] > start, result.error
        self._positions[edge] = notifications[-1].id
        return True, None

    def _follower(self, name: str) -> Any:
        follower = self.apps[name]
        assert isinstance(follower, Follower)
        return follower


class TimerThread(RecordingEventReceiver[Any]):
    """Runs ``tick`` on a thread of its own: when the moment it last returned comes (by ``clock``), and at
    once whenever the application it watches records something. For timers that wait on the outside world
    (a webhook's client), which must not hold back the runner's thread."""

    def __init__(self, name: str, tick: Callable[[], datetime | None], clock: Callable[[], datetime],
                 idle_seconds: float = 5.0) -> None:
        self.tick = tick
        self.clock = clock
        self.idle_seconds = idle_seconds
        """The longest it sleeps: a moment that came by another process's record is seen by then."""
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def watch(self, app: Leader[Any]) -> None:
        """Tick whenever ``app`` records (so a new delivery is sent at once)."""
        app.lead(self)

    def receive_recording_event(self, new_recording_event: RecordingEvent[Any]) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    @property
    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # before ticking: a record during the tick wakes the next one
            try:
                due = self.tick()
            except Exception:  # noqa: BLE001 - the timer keeps going; the error is logged
                log.exception("%s failed; retrying", self._thread.name)
                due = None
            wait = self.idle_seconds if due is None else (due - self.clock()).total_seconds()
            self._wake.wait(min(max(wait, 0.0), self.idle_seconds))
