"""A consultation: requested → confirmed | rejected; confirmed → cancelled, completed, no-show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

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


class ConsultationStateError(DomainError):
    """The consultation's status does not allow this command."""


@dataclass(frozen=True)
class ClinicalNote:
    """A note written by the doctor on a confirmed or completed consultation."""

    author: str
    text: str
    written_at: datetime


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

    class Confirmed(ClinicAggregate.Event):
        pass

    class Rejected(ClinicAggregate.Event):
        reason: str

    class CancelledByPatient(ClinicAggregate.Event):
        personal_data = ("reason",)
        reason: str

    class CancelledByClinic(ClinicAggregate.Event):
        personal_data = ("reason",)
        reason: str

    class Completed(ClinicAggregate.Event):
        pass

    class MarkedNoShow(ClinicAggregate.Event):
        pass

    class NoteAdded(ClinicAggregate.Event):
        personal_data = ("text",)
        author: str
        text: str

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

    def confirm(self) -> None:
        """Confirm a requested consultation; confirming again is a no-op."""
        if self.status == ConsultationStatus.CONFIRMED:
            return
        self._require(ConsultationStatus.REQUESTED, "confirm")
        self._confirmed()

    def reject(self, reason: str) -> None:
        """Reject a requested consultation; rejecting again is a no-op."""
        if self.status == ConsultationStatus.REJECTED:
            return
        self._require(ConsultationStatus.REQUESTED, "reject")
        self._rejected(reason=reason)

    def cancel_by_patient(self, reason: str) -> None:
        self._require(ConsultationStatus.CONFIRMED, "cancel")
        self._cancelled_by_patient(reason=reason)

    def cancel_by_clinic(self, reason: str) -> None:
        self._require(ConsultationStatus.CONFIRMED, "cancel")
        self._cancelled_by_clinic(reason=reason)

    def complete(self) -> None:
        self._require(ConsultationStatus.CONFIRMED, "complete")
        self._completed()

    def mark_no_show(self) -> None:
        self._require(ConsultationStatus.CONFIRMED, "mark as no-show")
        self._marked_no_show()

    def add_note(self, author: str, text: str) -> None:
        """Add a clinical note; only confirmed or completed consultations take notes."""
        if self.status not in (ConsultationStatus.CONFIRMED, ConsultationStatus.COMPLETED):
            raise ConsultationStateError(f"cannot add a note to a {self.status} consultation")
        if not text.strip():
            raise ValueError("a note needs text")
        self._note_added(author=author, text=text)

    def _require(self, status: ConsultationStatus, action: str) -> None:
        if self.status != status:
            raise ConsultationStateError(f"cannot {action} a {self.status} consultation")

    @event(Confirmed)
    def _confirmed(self) -> None:
        self.status = ConsultationStatus.CONFIRMED

    @event(Rejected)
    def _rejected(self, reason: str) -> None:
        self.status = ConsultationStatus.REJECTED
        self.rejection_reason = reason

    @event(CancelledByPatient)
    def _cancelled_by_patient(self, reason: str) -> None:
        self.status = ConsultationStatus.CANCELLED
        self.cancellation_reason = reason

    @event(CancelledByClinic)
    def _cancelled_by_clinic(self, reason: str) -> None:
        self.status = ConsultationStatus.CANCELLED
        self.cancellation_reason = reason

    @event(Completed)
    def _completed(self) -> None:
        self.status = ConsultationStatus.COMPLETED

    @event(MarkedNoShow)
    def _marked_no_show(self) -> None:
        self.status = ConsultationStatus.NO_SHOW

    @event(NoteAdded)
    def _note_added(self, author: str, text: str) -> None:
        self.notes.append(ClinicalNote(author=author, text=text, written_at=self.modified_on))
