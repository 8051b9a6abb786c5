"""A saga explained step by step: each step with its time and how long it lasted, the event that recorded
it and the event that caused that, and, for an open saga, what it waits on, since when, and its deadline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from application.views import AuditedEvent, SagaListing
from domain.booking_saga_table import OPEN_STATES, StepStatus
from interfaces.http.console.reads import AUDIT_KINDS, ConsoleReads

WAITING = frozenset({StepStatus.REQUESTED, StepStatus.UNAVAILABLE})
"""A step in one of these is one the saga waits on (asked, or asked again after "unavailable")."""


@dataclass(frozen=True)
class TimelineStep:
    name: str
    status: str
    at: datetime
    lasted: timedelta | None
    """Until the next step (``None``: the last step of an open saga, still running)."""
    recorded_by: AuditedEvent | None
    """The saga's event that recorded the step (its type, actor, correlation and cause)."""


@dataclass(frozen=True)
class SagaTimeline:
    listing: SagaListing
    audit_kind: str
    steps: list[TimelineStep]
    events: list[AuditedEvent]
    waits_on: TimelineStep | None
    """The step an open saga waits on (``None``: it has ended)."""
    waiting: timedelta | None
    past_deadline: bool
    stuck: bool


def saga_timeline(reads: ConsoleReads, saga_id: UUID, now: datetime, stuck_after: timedelta) -> SagaTimeline:
    """The saga's timeline from its read model (what it is) and its stream (what recorded each step)."""
    saga, steps = reads.saga(saga_id)
    kind = AUDIT_KINDS[saga.aggregate]
    events = reads.trail(kind, saga_id).events
    by_time = {event.timestamp: event for event in events}
    timeline = []
    for index, step in enumerate(steps):
        following = steps[index + 1].at if index + 1 < len(steps) else (None if saga.open else step.at)
        timeline.append(TimelineStep(step.name, step.status, step.at,
                                     None if following is None else following - step.at, by_time.get(step.at)))
    waits_on = next((s for s in reversed(timeline) if s.status in WAITING), None) if saga.open else None
    return SagaTimeline(saga, kind, timeline, events, waits_on,
                        now - saga.waiting_since if saga.open else None,
                        saga.state in OPEN_STATES and saga.deadline <= now, saga.stuck(now, stuck_after))
