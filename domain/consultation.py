"""A consultation: requested → confirmed | rejected | cancelled; confirmed → cancelled, completed, no-show.

``LIFECYCLE`` is the one statement of those moves: the aggregate's commands check it, its events
apply it, and the consultation read model (``projections/consultation_detail.py``) derives the
status each event leaves from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from domain.base import ClinicAggregate, DomainError
from domain.values import require_aware


class ConsultationStatus(StrEnum):
    REQUESTED = "REQUESTED"
    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    COMPLETED = "COMPLETED"
    NO_SHOW = "NO_SHOW"


RESCHEDULE_NAMESPACE = uuid5(NAMESPACE_URL, "urn:clinic:reschedule-saga")


def reschedule_id_for(consultation_id: UUID, request_version: int) -> UUID:
    """The saga that runs the reschedule asked at ``request_version`` of the consultation (the version of
    its ``RescheduleRequested``): one per request, whoever derives it."""
    return uuid5(RESCHEDULE_NAMESPACE, f"{consultation_id}@{request_version}")


class ConsultationStateError(DomainError):
    """The consultation's status does not allow this command."""


@dataclass(frozen=True)
class Transition:
    """An event a consultation records in one of ``sources``, leaving it ``target`` (``None``: unchanged)."""

    sources: frozenset[ConsultationStatus]
    target: ConsultationStatus | None


_S = ConsultationStatus
LIFECYCLE: dict[str, Transition] = {
    "Confirmed": Transition(frozenset({_S.REQUESTED}), _S.CONFIRMED),
    "Rejected": Transition(frozenset({_S.REQUESTED}), _S.REJECTED),
    "CancelledByPatient": Transition(frozenset({_S.REQUESTED, _S.CONFIRMED}), _S.CANCELLED),
    "CancelledByClinic": Transition(frozenset({_S.REQUESTED, _S.CONFIRMED}), _S.CANCELLED),
    "Completed": Transition(frozenset({_S.CONFIRMED}), _S.COMPLETED),
    "MarkedNoShow": Transition(frozenset({_S.CONFIRMED}), _S.NO_SHOW),
    "NoteAdded": Transition(frozenset({_S.CONFIRMED, _S.COMPLETED}), None),
    "RescheduleRequested": Transition(frozenset({_S.CONFIRMED}), None),
    "Rescheduled": Transition(frozenset({_S.CONFIRMED}), None),
    "RescheduleFailed": Transition(frozenset({_S.CONFIRMED, _S.CANCELLED, _S.COMPLETED, _S.NO_SHOW}), None),
}
"""Every event after ``Requested`` (which leaves it ``REQUESTED``), by its class name."""


@dataclass(frozen=True)
class ClinicalNote:
    """A note written by the doctor on a confirmed or completed consultation."""

    author: str
    text: str
    written_at: datetime


class LifecycleEvent(ClinicAggregate.Event):
    """An event of ``LIFECYCLE``: applying it sets the status the table says. (Declared outside the
    aggregate, so that the aggregate's namespace holds only the events it records.)"""

    def apply(self, aggregate: Any) -> None:
        target = LIFECYCLE[type(self).__name__].target
        if target is not None:
            aggregate.status = target


class Consultation(ClinicAggregate):
    """A patient's booking of a doctor at a start time, decided by the booking saga."""

    class Requested(ClinicAggregate.Created):
        """The patient's free-text ``reason`` is personal data; the patient is the data subject."""

        personal_data = ("reason",)
        data_subject = "patient_id"
        patient_id: UUID
        doctor_id: UUID
        start: datetime
        reason: str

    class Confirmed(LifecycleEvent):
        pass

    class Rejected(LifecycleEvent):
        reason: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.rejection_reason = self.reason

    class CancelledByPatient(LifecycleEvent):
        personal_data = ("reason",)
        reason: str
        held_by: UUID | None = None
        """The saga whose booking holds the slot (``None``: the booking saga, as in older events)."""
        pending_reschedule: UUID | None = None
        """The reschedule saga under way, which then stops."""

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.cancellation_reason = self.reason

    class CancelledByClinic(LifecycleEvent):
        personal_data = ("reason",)
        reason: str
        held_by: UUID | None = None
        pending_reschedule: UUID | None = None

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.cancellation_reason = self.reason

    class Completed(LifecycleEvent):
        pass

    class MarkedNoShow(LifecycleEvent):
        pass

    class RescheduleRequested(LifecycleEvent):
        """The patient (or the clinic) asks to move the confirmed consultation to ``start``: the saga
        ``reschedule_id`` holds and books the new slot; until it moves the consultation, nothing of the
        original booking changes."""

        reschedule_id: UUID
        patient_id: UUID
        doctor_id: UUID
        from_start: datetime
        start: datetime
        held_by: UUID | None
        """The saga whose booking holds the current slot (``None``: the booking saga)."""

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.pending_reschedule = self.reschedule_id
            aggregate.rescheduling_to = self.start
            aggregate.reschedule_failure = None

    class Rescheduled(LifecycleEvent):
        """The reschedule saga ``reschedule_id`` booked the new slot: the consultation now starts at ``start``,
        on that saga's slot; scheduling then releases the old one."""

        reschedule_id: UUID
        patient_id: UUID
        doctor_id: UUID
        from_start: datetime
        start: datetime

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.start = self.start
            aggregate.held_by = self.reschedule_id
            aggregate.pending_reschedule = None
            aggregate.rescheduling_to = None

    class RescheduleFailed(LifecycleEvent):
        """The reschedule ``reschedule_id`` did not happen (``reason``): the consultation keeps its start and slot."""

        reschedule_id: UUID
        reason: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.pending_reschedule = None
            aggregate.rescheduling_to = None
            aggregate.reschedule_failure = self.reason

    class NoteAdded(LifecycleEvent):
        personal_data = ("text",)
        author: str
        text: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.notes.append(ClinicalNote(author=self.author, text=self.text, written_at=self.timestamp))

    @event(Requested)
    def __init__(self, patient_id: UUID, doctor_id: UUID, start: datetime, reason: str) -> None:
        self.patient_id = patient_id
        self.doctor_id = doctor_id
        self.start = require_aware(start, "start")
        self.reason = reason
        self.status = ConsultationStatus.REQUESTED
        self.rejection_reason: str | None = None
        self.cancellation_reason: str | None = None
        self.notes: list[ClinicalNote] = []
        self.pending_reschedule: UUID | None = None
        """The saga of the reschedule under way (``None``: none)."""
        self.rescheduling_to: datetime | None = None
        self.reschedule_failure: str | None = None
        """Why the last reschedule did not happen (``None``: it did, or none was asked)."""
        self.held_by: UUID | None = None
        """The saga whose booking holds the consultation's slot (``None``: its booking saga)."""

    def confirm(self) -> None:
        """Confirm a requested consultation; confirming again is a no-op, and so is the saga's verdict
        on a consultation cancelled before it decided (the saga then gives the slot back)."""
        if self.status not in (ConsultationStatus.CONFIRMED, ConsultationStatus.CANCELLED):
            self._move(Consultation.Confirmed, "confirm")

    def reject(self, reason: str) -> None:
        """Reject a requested consultation; rejecting again, or one cancelled before the saga decided, is
        a no-op."""
        if self.status not in (ConsultationStatus.REJECTED, ConsultationStatus.CANCELLED):
            self._move(Consultation.Rejected, "reject", reason=reason)

    def cancel_by_patient(self, reason: str) -> None:
        self._move(Consultation.CancelledByPatient, "cancel", reason=reason, held_by=self.held_by,
                   pending_reschedule=self.pending_reschedule)

    def cancel_by_clinic(self, reason: str) -> None:
        self._move(Consultation.CancelledByClinic, "cancel", reason=reason, held_by=self.held_by,
                   pending_reschedule=self.pending_reschedule)

    def complete(self) -> None:
        self._move(Consultation.Completed, "complete")

    def mark_no_show(self) -> None:
        self._move(Consultation.MarkedNoShow, "mark as no-show")

    def request_reschedule(self, start: datetime) -> UUID:
        """Ask to move a confirmed consultation to ``start``; one at a time. Returns the id of the saga that
        moves it, derived from this request (``reschedule_id_for``), so the saga and the consultation agree."""
        start = require_aware(start, "start")
        if self.status == ConsultationStatus.CONFIRMED and self.pending_reschedule is not None:
            raise ConsultationStateError("a reschedule of this consultation is already under way")
        if self.status == ConsultationStatus.CONFIRMED and start == self.start:
            raise ConsultationStateError("the consultation already starts then")
        reschedule_id = reschedule_id_for(self.id, self.version + 1)
        self._move(Consultation.RescheduleRequested, "reschedule", reschedule_id=reschedule_id, patient_id=self.patient_id,
                   doctor_id=self.doctor_id, from_start=self.start, start=start, held_by=self.held_by)
        return reschedule_id

    def move(self, reschedule_id: UUID, start: datetime) -> None:
        """The reschedule ``reschedule_id`` booked its new slot: move there if still confirmed, else record why
        not (the saga then gives the new slot back). Again, or for another saga: a no-op."""
        if self.pending_reschedule != reschedule_id:
            return
        if self.status == ConsultationStatus.CONFIRMED:
            self._move(Consultation.Rescheduled, "move", reschedule_id=reschedule_id, patient_id=self.patient_id,
                       doctor_id=self.doctor_id, from_start=self.start, start=start)
        else:
            self._move(Consultation.RescheduleFailed, "fail the reschedule of", reschedule_id=reschedule_id,
                       reason=f"consultation_{self.status.lower()}")

    def reschedule_failed(self, reschedule_id: UUID, reason: str) -> None:
        """The reschedule ``reschedule_id`` failed: forget it (the original booking was never touched)."""
        if self.pending_reschedule == reschedule_id:
            self._move(Consultation.RescheduleFailed, "fail the reschedule of", reschedule_id=reschedule_id, reason=reason)

    def add_note(self, author: str, text: str) -> None:
        """Add a clinical note; only confirmed or completed consultations take notes."""
        if self.status in LIFECYCLE["NoteAdded"].sources and not text.strip():
            raise ValueError("a note needs text")
        self._move(Consultation.NoteAdded, "add a note to", author=author, text=text)

    def _move(self, event_class: type[LifecycleEvent], action: str, **fields: Any) -> None:
        """Record ``event_class`` if ``LIFECYCLE`` allows it from the current status, else refuse ``action``."""
        if self.status not in LIFECYCLE[event_class.__name__].sources:
            raise ConsultationStateError(f"cannot {action} a {self.status} consultation")
        self.trigger_event(event_class, **fields)
