"""Resilience for synchronous calls to another service: circuit breaker, bulkhead, backoff.

Our own small breaker rather than aiobreaker 1.2.0 (ADR 0004): aiobreaker lets every concurrent
call through in half-open, resets the failure count on an excluded exception (and closes a
half-open breaker on one), emits CLOSED -> CLOSED events, and reads the wall clock
(``datetime.utcnow``), so tests cannot move time.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


StateListener = Callable[[str, CircuitState, CircuitState], None]
"""Called as ``listener(breaker_name, old_state, new_state)`` once per transition."""


class CircuitOpenError(Exception):
    """The breaker refused the call without running it (open, or half-open with a trial in flight)."""

    def __init__(self, message: str, retry_in: float) -> None:
        super().__init__(message)
        self.retry_in = retry_in


class CircuitBreaker:
    """A thread-safe circuit breaker with exactly one trial call in half-open.

    - CLOSED: calls run; ``failure_threshold`` consecutive failures open the circuit. A success
      resets the count.
    - OPEN: calls fail fast with ``CircuitOpenError`` until ``reset_timeout`` seconds have passed.
    - HALF_OPEN: the first caller after the timeout takes the single trial permit; every other
      caller fails fast while it runs. Trial success closes, trial failure re-opens (for another
      ``reset_timeout``).

    Exceptions that are instances of ``exclude`` (the other side answered; our request was wrong)
    are invisible to the breaker: they neither count as failures nor reset the count, and a trial
    ending in one hands the permit back without a verdict. ``BaseException``s (KeyboardInterrupt)
    likewise. The outcome of a call admitted before a transition (e.g. a slow call still running
    when the circuit opened) is ignored: it says nothing about the current state.
    """

    def __init__(self, name: str, *, failure_threshold: int = 5, reset_timeout: float = 15.0,
                 exclude: tuple[type[BaseException], ...] = (), clock: Callable[[], float] = time.monotonic,
                 listeners: Iterable[StateListener] = ()) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be 1 or more")
        if reset_timeout <= 0:
            raise ValueError("reset_timeout must be positive")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._exclude = exclude
        self._clock = clock
        self._listeners = list(listeners)
        self._lock = threading.RLock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self._generation = 0  # bumped on every transition: late outcomes of older calls are ignored

    @property
    def state(self) -> CircuitState:
        """The current state (an open circuit whose timeout passed stays OPEN until a call arrives)."""
        with self._lock:
            return self._state

    @property
    def failure_count(self) -> int:
        with self._lock:
            return self._failures

    def add_listener(self, listener: StateListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def call(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        generation, trial = self._admit()
        try:
            result = fn(*args, **kwargs)
        except self._exclude:
            self._neutral(generation, trial)
            raise
        except Exception:
            self._failure(generation, trial)
            raise
        except BaseException:
            self._neutral(generation, trial)
            raise
        self._success(generation, trial)
        return result

    # Transitions, all under the lock ---------------------------------------------------------

    def _admit(self) -> tuple[int, bool]:
        with self._lock:
            if self._state is CircuitState.CLOSED:
                return self._generation, False
            if self._state is CircuitState.OPEN:
                remaining = self._opened_at + self.reset_timeout - self._clock()
                if remaining > 0:
                    raise CircuitOpenError(
                        f"circuit '{self.name}' is open after {self.failure_threshold} consecutive failures; "
                        f"next trial in {remaining:.1f}s", remaining)
                self._transition(CircuitState.HALF_OPEN)
            if self._trial_in_flight:
                raise CircuitOpenError(f"circuit '{self.name}' is half-open and its trial call is in flight", 0.0)
            self._trial_in_flight = True
            return self._generation, True

    def _success(self, generation: int, trial: bool) -> None:
        with self._lock:
            if generation != self._generation:
                return
            if trial:
                self._trial_in_flight = False
                self._transition(CircuitState.CLOSED)
            self._failures = 0

    def _failure(self, generation: int, trial: bool) -> None:
        with self._lock:
            if generation != self._generation:
                return
            if trial:
                self._trial_in_flight = False
                self._open()
                return
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._open()

    def _neutral(self, generation: int, trial: bool) -> None:
        with self._lock:
            if trial and generation == self._generation:
                self._trial_in_flight = False

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._transition(CircuitState.OPEN)

    def _transition(self, new: CircuitState) -> None:
        old, self._state = self._state, new
        self._generation += 1
        if new is CircuitState.CLOSED:
            self._failures = 0
        level = logging.WARNING if new is CircuitState.OPEN else logging.INFO
        log.log(level, "circuit %s: %s -> %s", self.name, old.value, new.value)
        for listener in self._listeners:
            try:
                listener(self.name, old, new)
            except Exception:  # a broken metrics hook must not break calls
                log.exception("circuit %s: state listener %r failed", self.name, listener)


class BulkheadFullError(Exception):
    """Too many calls are already in flight; this one was refused without running."""


class Bulkhead:
    """At most ``max_concurrent`` calls at once; a caller waits ``acquire_timeout`` seconds at most."""

    def __init__(self, name: str, max_concurrent: int = 10, acquire_timeout: float = 0.05) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be 1 or more")
        self.name = name
        self.max_concurrent = max_concurrent
        self.acquire_timeout = acquire_timeout
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._count_lock = threading.Lock()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        with self._count_lock:
            return self._in_flight

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self.acquire_timeout):
            raise BulkheadFullError(f"bulkhead '{self.name}' is full: {self.max_concurrent} calls in flight "
                                    f"(waited {self.acquire_timeout * 1000:.0f} ms)")
        with self._count_lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._count_lock:
                self._in_flight -= 1
            self._slots.release()


class Backoff:
    """The waits of a loop that retries a lost connection or a failed step: ``first`` seconds, doubling
    after each wait up to ``most``, back to ``first`` after a success. ``jitter``: each wait is drawn
    from [½, 1] of it, so that processes that failed together do not retry together."""

    def __init__(self, first: float = 0.2, most: float = 5.0, jitter: bool = False) -> None:
        self.first, self.most, self.jitter = first, most, jitter
        self.delay = first
        """The next wait (before jitter)."""

    def next(self) -> float:
        """The wait before the next attempt; the one after is twice as long (at most ``most``)."""
        wait = self.delay * random.uniform(0.5, 1.0) if self.jitter else self.delay
        self.delay = min(self.delay * 2, self.most)
        return wait

    def reset(self) -> None:
        """It worked: the next failure waits ``first`` again."""
        self.delay = self.first


def backoff_delay(attempt: int, base: float, cap: float, random: Callable[[], float]) -> float:
    """Full-jitter exponential backoff before retry number ``attempt`` (1, 2, ...):
    uniform in [0, min(cap, base * 2 ** (attempt - 1))]."""
    return random() * min(cap, base * 2 ** (attempt - 1))
