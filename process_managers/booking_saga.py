"""The booking saga's persisted state machine.

Its moves are the rows of ``domain.booking_saga_table.BOOKING_SAGA``: each event below applies its
row (the state it moves to, the steps it appends). Its events are also the commands other contexts
follow: ``Started`` asks scheduling to hold the slot, ``RegistrantsValidated`` to book it,
``Completed`` asks consultations to confirm, ``Rejected`` to reject (and scheduling to release a held
slot), ``Cancelled`` (the consultation was cancelled before the saga decided) and
``SlotReleaseRequested`` to give a slot back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event
from eventsourcing.utils import get_topic

from domain.base import ClinicAggregate
from domain.booking_saga_table import BOOKING_SAGA, OPEN_STATES, Move, SagaState, SagaTable, Step
from domain.metadata import event_metadata
from domain.values import RejectionReason

__all__ = ["OPEN_STATES", "SAGA_EVENT_BY_TOPIC", "BookingSaga", "SagaState", "SagaStep", "saga_id_for"]

SAGA_NAMESPACE = uuid5(NAMESPACE_URL, "urn:clinic:booking-saga")


@dataclass(frozen=True)
class SagaStep:
    """One step of the saga as an operator reads it."""

    name: str
    status: str
    at: datetime


class SagaMoveError(Exception):
    """An event the saga's table has no row for in the saga's state: a defect, never a user error."""


def saga_id_for(consultation_id: UUID) -> UUID:
    """The one saga that books ``consultation_id``."""
    return uuid5(SAGA_NAMESPACE, str(consultation_id))


class SagaMove(ClinicAggregate.Event):
    """An event of the saga's table after its start: applying it makes its row's move. (Declared
    outside the aggregate, so that the aggregate's namespace holds only the events it records.)"""

    def apply(self, aggregate: Any) -> None:
        aggregate.make_move(type(self).__name__)


class ValidationUnavailableMove(SagaMove):
    """The registry could not answer; validation is retried at ``retry_at``."""

    error: str
    retry_at: datetime

    def apply(self, aggregate: Any) -> None:
        super().apply(aggregate)
        aggregate.validation_attempts += 1
        aggregate.validation_retry_at = self.retry_at


class RegistrantsValidatedMove(SagaMove):
    """Patient and doctor may book: scheduling books ``slot_id``."""

    slot_id: UUID

    def apply(self, aggregate: Any) -> None:
        super().apply(aggregate)
        aggregate.validation_retry_at = None


class RejectedMove(SagaMove):
    """A step failed: the saga compensates (scheduling releases ``slot_id`` if ``release_slot``)."""

    consultation_id: UUID
    slot_id: UUID
    reason: str
    release_slot: bool
    failed_step: str = ""
    """The step that failed (``hold_slot``, ``validate_registrants``, ``book_slot``, …); empty in
    booking events recorded before it existed (the table's row for the saga's state names it)."""

    def apply(self, aggregate: Any) -> None:
        super().apply(aggregate)
        aggregate.rejection_reason = self.reason
        aggregate.release_requested = self.release_slot


class CancelledMove(SagaMove):
    """The consultation was cancelled before the saga finished: stop, and give back whatever slot the
    saga's commands hold or book (scheduling takes the release after them, in the saga's order)."""

    consultation_id: UUID
    slot_id: UUID
    reason: str
    cancelled_step: str

    def apply(self, aggregate: Any) -> None:
        super().apply(aggregate)
        aggregate.release_requested = True


class SlotReleaseRequestedMove(SagaMove):
    """Scheduling gives ``slot_id`` back (a cancellation after the saga completed, or a late hold)."""

    slot_id: UUID
    reason: str

    def apply(self, aggregate: Any) -> None:
        super().apply(aggregate)
        aggregate.release_requested = True


class TableSaga(ClinicAggregate):
    """What a saga run from a ``SagaTable`` does whatever it books: its events make their rows' moves,
    and a command records its event only where the table has a row for it (so every command is
    idempotent). A concrete saga declares ``table`` and the events its rows name."""

    table: ClassVar[SagaTable]
    consultation_id: UUID
    patient_id: UUID
    doctor_id: UUID
    slot_id: UUID
    """The slot this saga holds and books."""
    deadline: datetime

    def _start(self) -> None:
        self.rejection_reason: str | None = None
        self.release_requested = False
        self.validation_attempts = 0
        self.validation_retry_at: datetime | None = None
        self.steps: list[SagaStep] = []
        self._apply(self._row(None, "Started"))

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        with event_metadata(saga_id=str(self.id)):
            super().trigger_event(event_class, **kwargs)

    @classmethod
    def _create(cls, event_class: Any, *, id: Any = None, **kwargs: Any) -> Any:  # noqa: A002
        with event_metadata(saga_id=str(cls.create_id(**kwargs))):
            return super()._create(event_class, id=id, **kwargs)

    @property
    def is_open(self) -> bool:
        """It waits on a step under its deadline."""
        return self.state in OPEN_STATES

    def record_slot_held(self) -> None:
        """The slot is held: go on to validation, or give back a hold that came too late."""
        if self.state == SagaState.REJECTED and not self.release_requested:
            self._record(self.SlotReleaseRequested, slot_id=self.slot_id, reason="hold_after_rejection")
        else:
            self._record(self.SlotHeld)

    def record_validation_unavailable(self, error: str, retry_at: datetime) -> None:
        """The registry could not answer: validation is retried at ``retry_at``, until the deadline."""
        self._record(self.ValidationUnavailable, error=error, retry_at=retry_at)

    def record_registrants_valid(self) -> None:
        self._record(self.RegistrantsValidated, slot_id=self.slot_id)

    def reject(self, reason: RejectionReason | str) -> None:
        """Compensate: release the slot if held, and tell consultations. Idempotent."""
        move = self.table.move(self.state, "Rejected")
        if move is not None:
            self.trigger_event(self.Rejected, consultation_id=self.consultation_id, slot_id=self.slot_id,
                               reason=str(reason), release_slot=move.releases_slot, failed_step=move.failed_step)

    def time_out(self, now: datetime) -> None:
        """Compensate a saga still open at its deadline (``validation_unavailable`` if the
        registry never answered, else ``deadline_exceeded``)."""
        if self.is_open and now >= self.deadline:
            unanswered = self.state == SagaState.VALIDATING and self.validation_retry_at is not None
            self.reject(RejectionReason.VALIDATION_UNAVAILABLE if unanswered else RejectionReason.DEADLINE_EXCEEDED)

    def release_after_cancellation(self, reason: str) -> None:
        """The consultation was cancelled: a saga that has not finished stops and releases what it holds;
        a completed one gives its booked slot back. Once; a rejected saga has nothing to give back."""
        if self.state == SagaState.COMPLETED:
            self._record(self.SlotReleaseRequested, slot_id=self.slot_id, reason=reason)
        elif (move := self.table.move(self.state, "Cancelled")) is not None:
            self.trigger_event(self.Cancelled, consultation_id=self.consultation_id, slot_id=self.slot_id,
                               reason=reason, cancelled_step=move.cancelled_step)

    def make_move(self, event_name: str) -> None:
        """Apply the table's row for ``event_name`` in the current state (the events' mutator)."""
        self._apply(self._row(self.state, event_name))

    def _record(self, event_class: type[SagaMove], **fields: Any) -> None:
        """Record ``event_class`` if the table has a move for it in this state; otherwise do nothing."""
        if self.table.move(self.state, event_class.__name__) is not None:
            self.trigger_event(event_class, **fields)

    def _apply(self, move: Move) -> None:
        self.state = move.target
        self.steps.extend(_saga_step(step, self.modified_on) for step in move.steps)

    def _row(self, state: SagaState | None, event_name: str) -> Move:
        move = self.table.move(state, event_name)
        if move is None:
            raise SagaMoveError(f"the {self.table.aggregate} has no move for {event_name} in {state or 'no state'}")
        return move

    # The events every table saga records (each concrete saga declares its own classes).
    SlotHeld: ClassVar[type[SagaMove]]
    ValidationUnavailable: ClassVar[type[SagaMove]]
    RegistrantsValidated: ClassVar[type[SagaMove]]
    Rejected: ClassVar[type[SagaMove]]
    Cancelled: ClassVar[type[SagaMove]]
    SlotReleaseRequested: ClassVar[type[SagaMove]]


class BookingSaga(TableSaga):
    """Books one consultation: hold slot → validate registrants → book slot → confirm."""

    table = BOOKING_SAGA

    class Started(ClinicAggregate.Created):
        consultation_id: UUID
        patient_id: UUID
        doctor_id: UUID
        slot_id: UUID
        deadline: datetime

    class SlotHeld(SagaMove):
        pass

    class ValidationUnavailable(ValidationUnavailableMove):
        pass

    class RegistrantsValidated(RegistrantsValidatedMove):
        pass

    class Completed(SagaMove):
        consultation_id: UUID

    class Rejected(RejectedMove):
        pass

    class Cancelled(CancelledMove):
        pass

    class SlotReleaseRequested(SlotReleaseRequestedMove):
        pass

    @staticmethod
    def create_id(
        consultation_id: UUID, patient_id: UUID, doctor_id: UUID, slot_id: UUID, deadline: datetime
    ) -> UUID:
        return saga_id_for(consultation_id)

    @event(Started)
    def __init__(
        self, consultation_id: UUID, patient_id: UUID, doctor_id: UUID, slot_id: UUID, deadline: datetime
    ) -> None:
        self.consultation_id = consultation_id
        self.patient_id = patient_id
        self.doctor_id = doctor_id
        self.slot_id = slot_id
        self.deadline = deadline
        self._start()

    def record_slot_booked(self) -> None:
        self._record(BookingSaga.Completed, consultation_id=self.consultation_id)


def _saga_step(step: Step, at: datetime) -> SagaStep:
    return SagaStep(step.name, step.status.value, at)


SAGA_EVENT_BY_TOPIC: dict[str, str] = {get_topic(getattr(BookingSaga, kind)): kind for kind in BOOKING_SAGA.events}
"""The table's event name of each stored saga topic (the timer reads the log without decoding all of it)."""
