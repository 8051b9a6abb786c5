"""Plain values the use cases return: never aggregates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal, get_args
from uuid import UUID

from domain.booking_saga_table import ENDED_STATES, SagaState


@dataclass(frozen=True)
class PatientView:
    patient_id: UUID
    name: str
    email: str
    birth_date: date | None
    """``None`` once the patient's personal data is erased (name and email read "[erased]")."""
    consent: bool
    erased: bool = False


@dataclass(frozen=True)
class DoctorView:
    doctor_id: UUID
    name: str
    specialty: str
    active: bool


@dataclass(frozen=True)
class SlotView:
    slot_id: UUID
    doctor_id: UUID
    start: datetime
    duration_minutes: int
    status: str
    booking_id: UUID | None


@dataclass(frozen=True)
class ConsultationView:
    consultation_id: UUID
    patient_id: UUID
    doctor_id: UUID
    start: datetime
    status: str
    reason: str
    rejection_reason: str | None
    version: int
    rescheduling_to: datetime | None = None
    """The start a reschedule under way moves it to (``None``: none under way)."""
    reschedule_failure: str | None = None
    """Why the last reschedule did not happen (``None``: it did, or none was asked)."""


@dataclass(frozen=True)
class DoctorListing:
    """A doctor as the directory shows them."""

    doctor_id: UUID
    name: str
    specialty: str
    active: bool


@dataclass(frozen=True)
class WebhookDeliveryListing:
    """One outcome sent to a subscription, as its delivery log shows it."""

    delivery_id: UUID
    subscription_id: UUID
    event_type: str
    consultation_id: UUID
    created_at: datetime
    status: str
    attempts: int
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None


@dataclass(frozen=True)
class WebhookDeliveryPage:
    items: list[WebhookDeliveryListing]
    next_cursor: str | None


@dataclass(frozen=True)
class DoctorPage:
    items: list[DoctorListing]
    next_cursor: str | None


@dataclass(frozen=True)
class Note:
    author: str
    text: str
    written_at: datetime


@dataclass(frozen=True)
class BookingAccepted:
    consultation_id: UUID
    saga_id: UUID
    status: str


@dataclass(frozen=True)
class SagaStep:
    name: str
    status: str
    at: datetime


@dataclass(frozen=True)
class Saga:
    saga_id: UUID
    consultation_id: UUID
    state: str
    rejection_reason: str | None
    deadline: datetime
    steps: list[SagaStep]
    kind: str | None = None
    """``booking`` or ``reschedule`` (``None`` until the saga list has it)."""
    patient_id: UUID | None = None
    doctor_id: UUID | None = None
    started_at: datetime | None = None
    waiting_since: datetime | None = None
    """Since when it is on its current step (the first asking, for a step asked again)."""
    correlation_id: str | None = None
    """The ``X-Correlation-Id`` of the request that started it."""
    trace_id: str | None = None
    """The W3C trace id of the request that started it, when it was traced."""


@dataclass(frozen=True)
class SagaListing:
    """A saga as a list of sagas shows it."""

    saga_id: UUID
    kind: str
    aggregate: str
    """The saga aggregate's class (``BookingSaga``, ``RescheduleSaga``): which audit kind replays it."""
    consultation_id: UUID
    patient_id: UUID
    doctor_id: UUID
    started_at: datetime
    state: str
    rejection_reason: str | None
    deadline: datetime
    waiting_since: datetime
    """Since when it is on its last step (first asked; asking again does not restart it)."""
    correlation_id: str | None = None
    """The correlation id of the request that started it."""
    trace_id: str | None = None
    """The trace it started in (W3C trace id), when the request was traced."""

    @property
    def open(self) -> bool:
        """It has not ended (confirmed, moved, rejected or cancelled)."""
        return self.state not in ENDED_STATES

    def stuck(self, now: datetime, after: timedelta) -> bool:
        """Open, and past its deadline or waiting on one step for longer than ``after``."""
        return self.open and (self.deadline <= now or now - self.waiting_since > after)


SagaStateFilter = Literal["open", "stuck", "confirmed", "rejected", "cancelled"]
SAGA_STATE_FILTERS: tuple[str, ...] = get_args(SagaStateFilter)
"""What a list of sagas filters by: not ended, stuck, or how it ended."""
STUCK_AFTER = timedelta(minutes=1)
"""An open saga on one step longer than this is stuck (as is any saga past its deadline)."""
_ENDED_AS = {"confirmed": SagaState.COMPLETED, "rejected": SagaState.REJECTED, "cancelled": SagaState.CANCELLED}


@dataclass(frozen=True)
class SagaFilter:
    """Which sagas a list keeps (``None``: any): by state, the correlation id of the request that started
    it, patient, doctor, and the days (UTC) it started, both ends included."""

    state: str | None = None
    correlation: str | None = None
    patient: UUID | None = None
    doctor: UUID | None = None
    since: date | None = None
    until: date | None = None

    def keeps(self, saga: SagaListing, now: datetime, stuck_after: timedelta = STUCK_AFTER) -> bool:
        day = saga.started_at.date()
        return (self._in_state(saga, now, stuck_after)
                and self.correlation in (None, saga.correlation_id) and self.patient in (None, saga.patient_id)
                and self.doctor in (None, saga.doctor_id)
                and (self.since is None or day >= self.since) and (self.until is None or day <= self.until))

    def _in_state(self, saga: SagaListing, now: datetime, stuck_after: timedelta) -> bool:
        if self.state is None:
            return True
        if self.state == "open":
            return saga.open
        if self.state == "stuck":
            return saga.stuck(now, stuck_after)
        return saga.state == _ENDED_AS[self.state]


@dataclass(frozen=True)
class SagaPage:
    items: list[SagaListing]
    next_cursor: str | None


@dataclass(frozen=True)
class AuditedEvent:
    type: str
    version: int
    timestamp: datetime
    correlation_id: str | None
    causation_id: str | None
    saga_id: str | None
    actor: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class AuditTrail:
    """An aggregate rebuilt from its stream alone, and the events that made it."""

    kind: str
    aggregate_id: UUID
    version: int
    state: dict[str, Any]
    events: list[AuditedEvent]
    integrity: str | None = None
    """``verified`` when the stream's hash chain verifies, else what breaks it; ``None`` where the store
    keeps no chain (SQLite)."""
