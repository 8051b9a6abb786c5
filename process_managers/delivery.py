"""The delivery engine: a batch of events to one follower, with exactly-once effect.

Both transports feed it: the in-process one (embedded mode, a leader's log read in order) and the
broker's (distributed mode, RabbitMQ deliveries, which may repeat or come out of order). For a batch
of jobs (event, tracking position) the follower runs its policy on each, in order, and records every
resulting event with the jobs' tracking in **one** transaction (``record_batch``). So:

- a job repeated inside the batch is a duplicate at once (only its first copy is processed);
- a job processed before (a lost ack, a redelivery) makes the transaction fail on its tracking row:
  nothing of the batch is recorded, the jobs already processed are found with one exact lookup
  (``processed``), reported ``DUPLICATE``, and the rest is recorded again without them;
- another ``IntegrityError`` is a concurrent write to one of the batch's aggregates: the batch is
  run again (it re-reads them), a few times, before it is treated as a failure;
- any other error fails the batch, which is split in two halves, each run on its own, down to the
  one job that fails (``FAILED``, with its error): one poison event never holds back the others;
- the store being unreachable (the library's ``OperationalError``, ``InterfaceError``) is not the
  batch's fault: it propagates, nothing is recorded, and the transport offers the batch again later.

With ``stop_at_failure`` (in-order delivery) the jobs after the first failure are left ``PENDING``:
the transport offers them again from there. Without it (a broker), they are processed, and the
failed one goes to the broker's retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError, Tracking

from process_managers.base import Job

CONFLICT_RETRIES = 3
"""How many times a batch is run again after a concurrent write to one of its aggregates."""
OUTAGES: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)
"""Errors of the store itself: never split for, never blamed on an event."""


class Outcome(Enum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    FAILED = "failed"
    PENDING = "pending"
    """Not attempted: an earlier job of an in-order batch failed."""


@dataclass(frozen=True)
class Result:
    """What became of one job of a batch."""

    outcome: Outcome
    error: BaseException | None = None


PROCESSED = Result(Outcome.PROCESSED)
DUPLICATE = Result(Outcome.DUPLICATE)
PENDING = Result(Outcome.PENDING)


def deliver_batch(follower: Any, jobs: Sequence[Job], *, exact: bool = True,
                  stop_at_failure: bool = False) -> list[Result]:
    """Process ``jobs`` on ``follower`` (a ``ClinicProcessApplication``); one ``Result`` per job, in order.

    ``exact``: a tracking row per job, so duplicates are told apart in any order (a broker); else one
    row per batch, its last job's (in-order delivery from one leader's log). Store outages propagate."""
    results: list[Result | None] = [None] * len(jobs)
    seen: set[tuple[str, int]] = set()
    first = []
    for index, job in enumerate(jobs):
        key = _key(job.tracking)
        if key in seen:
            results[index] = DUPLICATE
        else:
            seen.add(key)
            first.append(index)
    _Batch(follower, jobs, results, exact, stop_at_failure).run(first)
    return [result or PENDING for result in results]


def deliver(follower: Any, domain_event: Any, tracking: Tracking) -> Outcome:
    """One event (a batch of one: its tracking row is the batch's, on any store); raises what its policy raised."""
    result = deliver_batch(follower, [Job(domain_event, tracking)], exact=False)[0]
    if result.error is not None:
        raise result.error
    return result.outcome


def processed_among(follower: Any, trackings: Sequence[Tracking]) -> set[tuple[str, int]]:
    """Which of ``trackings`` the follower has recorded: exactly where its recorder can tell
    (``infrastructure/event_store.py``), else the library's "at or below the highest" (in-order stores)."""
    recorder = follower.recorder
    exact = getattr(recorder, "processed", None)
    if exact is not None:
        return set(exact(trackings))
    return {_key(t) for t in trackings if recorder.has_tracking_id(t.application_name, t.notification_id)}


class _Batch:
    """One ``deliver_batch`` call: the jobs, their results so far, and how to run a part of them."""

    def __init__(self, follower: Any, jobs: Sequence[Job], results: list[Result | None], exact: bool,
                 stop_at_failure: bool) -> None:
        self.follower, self.jobs, self.results = follower, jobs, results
        self.exact, self.stop_at_failure = exact, stop_at_failure
        self.failed = False

    def run(self, indices: list[int]) -> None:
        """Record the jobs at ``indices`` together, or find which of them fail."""
        if not indices or (self.failed and self.stop_at_failure):
            return
        error = self._record(indices)
        if error is None:
            return
        if len(indices) == 1:
            self.results[indices[0]] = Result(Outcome.FAILED, error)
            self.failed = True
            return
        middle = len(indices) // 2
        self.run(indices[:middle])
        self.run(indices[middle:])

    def _record(self, indices: list[int]) -> BaseException | None:
        """Record the jobs at ``indices`` (less those found processed already); the error if that failed."""
        conflicts = 0
        while indices:
            try:
                self.follower.record_batch([self.jobs[i] for i in indices], exact=self.exact)
            except OUTAGES:
                raise
            except IntegrityError as error:
                known = processed_among(self.follower, [self.jobs[i].tracking for i in indices])
                if known:
                    for i in indices:
                        if _key(self.jobs[i].tracking) in known:
                            self.results[i] = DUPLICATE
                    indices = [i for i in indices if _key(self.jobs[i].tracking) not in known]
                    continue
                conflicts += 1
                if conflicts > CONFLICT_RETRIES:
                    return error
                continue
            except Exception as error:  # noqa: BLE001 - the policy's: found by splitting, reported per job
                return error
            for i in indices:
                self.results[i] = PROCESSED
            return None
        return None


def _key(tracking: Tracking) -> tuple[str, int]:
    return tracking.application_name, tracking.notification_id
