"""The booking saga's persisted state machine.

Its events are also the commands other contexts follow: ``Started`` asks scheduling
to hold the slot, ``RegistrantsValidated`` to book it, ``Completed`` asks
consultations to confirm, ``Rejected`` to reject (and scheduling to release a held
slot), ``SlotReleaseRequested`` to give a slot back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from domain.base import ClinicAggregate
from domain.metadata import event_metadata
from domain.values import RejectionReason

SAGA_NAMESPACE = uuid5(NAMESPACE_URL, "urn:clinic:booking-saga")


class SagaState(StrEnum):
    HOLDING_SLOT = "HOLDING_SLOT"
    VALIDATING = "VALIDATING"
    BOOKING_SLOT = "BOOKING_SLOT"
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


OPEN_STATES = (SagaState.HOLDING_SLOT, SagaState.VALIDATING, SagaState.BOOKING_SLOT)


@dataclass(frozen=True)
class SagaStep:
    """One step of the saga as an operator reads it."""

    name: str
    status: str
    at: datetime


def saga_id_for(consultation_id: UUID) -> UUID:
    """The one saga that books ``consultation_id``."""
    return uuid5(SAGA_NAMESPACE, str(consultation_id))


class BookingSaga(ClinicAggregate):
    """Books one consultation: hold slot → validate registrants → book slot → confirm."""

    class Started(ClinicAggregate.Created):
        consultation_id: UUID
        patient_id: UUID
        doctor_id: UUID
        slot_id: UUID
        deadline: datetime

    class SlotHeld(ClinicAggregate.Event):
        pass

    class ValidationUnavailable(ClinicAggregate.Event):
        error: str
        retry_at: datetime

    class RegistrantsValidated(ClinicAggregate.Event):
        slot_id: UUID

    class Completed(ClinicAggregate.Event):
        consultation_id: UUID

    class Rejected(ClinicAggregate.Event):
        consultation_id: UUID
        slot_id: UUID
        reason: str
        release_slot: bool
        failed_step: str = ""
        """The step that failed (``hold_slot``, ``validate_registrants``, ``book_slot``); empty in
        events recorded before it existed."""

    class SlotReleaseRequested(ClinicAggregate.Event):
        slot_id: UUID
        reason: str

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
        self.state = SagaState.HOLDING_SLOT
        self.rejection_reason: str | None = None
        self.release_requested = False
        self.validation_attempts = 0
        self.validation_retry_at: datetime | None = None
        self.steps = [SagaStep("hold_slot", "requested", self.modified_on)]

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        with event_metadata(saga_id=str(self.id)):
            super().trigger_event(event_class, **kwargs)

    @classmethod
    def _create(cls, event_class: Any, *, id: Any = None, **kwargs: Any) -> Any:  # noqa: A002
        with event_metadata(saga_id=str(saga_id_for(kwargs["consultation_id"]))):
            return super()._create(event_class, id=id, **kwargs)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def record_slot_held(self) -> None:
        """The slot is held: go on to validation, or give back a hold that came too late."""
        if self.state == SagaState.HOLDING_SLOT:
            self._slot_held()
        elif self.state == SagaState.REJECTED and not self.release_requested:
            self._slot_release_requested(slot_id=self.slot_id, reason="hold_after_rejection")

    def record_validation_unavailable(self, error: str, retry_at: datetime) -> None:
        """The registry could not answer: validation is retried at ``retry_at``, until the deadline."""
        if self.state == SagaState.VALIDATING:
            self._validation_unavailable(error=error, retry_at=retry_at)

    def record_registrants_valid(self) -> None:
        if self.state == SagaState.VALIDATING:
            self._registrants_validated(slot_id=self.slot_id)

    def record_slot_booked(self) -> None:
        if self.state == SagaState.BOOKING_SLOT:
            self._completed(consultation_id=self.consultation_id)

    def reject(self, reason: RejectionReason) -> None:
        """Compensate: release the slot if held, reject the consultation. Idempotent."""
        if self.is_open:
            held = self.state != SagaState.HOLDING_SLOT
            self._rejected(consultation_id=self.consultation_id, slot_id=self.slot_id, reason=str(reason),
                           release_slot=held, failed_step=self.steps[-1].name)

    def time_out(self, now: datetime) -> None:
        """Compensate a saga still open at its deadline (``validation_unavailable`` if the
        registry never answered, else ``deadline_exceeded``)."""
        if self.is_open and now >= self.deadline:
            unanswered = self.state == SagaState.VALIDATING and self.validation_retry_at is not None
            self.reject(RejectionReason.VALIDATION_UNAVAILABLE if unanswered else RejectionReason.DEADLINE_EXCEEDED)

    def release_after_cancellation(self, reason: str) -> None:
        """The confirmed consultation was cancelled: give its slot back, once."""
        if self.state == SagaState.COMPLETED:
            self._slot_release_requested(slot_id=self.slot_id, reason=reason)

    def _step(self, name: str, status: str) -> None:
        self.steps.append(SagaStep(name, status, self.modified_on))

    @event(SlotHeld)
    def _slot_held(self) -> None:
        self.state = SagaState.VALIDATING
        self._step("hold_slot", "succeeded")
        self._step("validate_registrants", "requested")

    @event(ValidationUnavailable)
    def _validation_unavailable(self, error: str, retry_at: datetime) -> None:
        self.validation_attempts += 1
        self.validation_retry_at = retry_at
        self._step("validate_registrants", "unavailable")

    @event(RegistrantsValidated)
    def _registrants_validated(self, slot_id: UUID) -> None:
        self.state = SagaState.BOOKING_SLOT
        self.validation_retry_at = None
        self._step("validate_registrants", "succeeded")
        self._step("book_slot", "requested")

    @event(Completed)
    def _completed(self, consultation_id: UUID) -> None:
        self.state = SagaState.COMPLETED
        self._step("book_slot", "succeeded")
        self._step("confirm_consultation", "requested")

    @event(Rejected)
    def _rejected(self, consultation_id: UUID, slot_id: UUID, reason: str, release_slot: bool,
                  failed_step: str = "") -> None:
        self._step(failed_step or self.steps[-1].name, "failed")
        self.state = SagaState.REJECTED
        self.rejection_reason = reason
        self.release_requested = release_slot
        if release_slot:
            self._step("release_slot", "requested")
        self._step("reject_consultation", "requested")

    @event(SlotReleaseRequested)
    def _slot_release_requested(self, slot_id: UUID, reason: str) -> None:
        if self.state == SagaState.COMPLETED:
            self.state = SagaState.CANCELLED
        self.release_requested = True
        self._step("release_slot", "requested")
