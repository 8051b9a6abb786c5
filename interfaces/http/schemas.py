"""The API's request and response bodies: msgspec structs, decoded strictly."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import Meta, Struct

from application.readiness import Status
from application.views import AuditedEvent, Note

AwareDatetime = Annotated[datetime, Meta(tz=True, description="RFC 3339 date-time with a timezone offset")]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Text = Annotated[str, Meta(min_length=1, max_length=10_000)]
Email = Annotated[str, Meta(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]
Minutes = Annotated[int, Meta(gt=0, le=24 * 60)]
ConsultationStatus = Literal["REQUESTED", "CONFIRMED", "REJECTED", "CANCELLED", "COMPLETED", "NO_SHOW"]


class RequestBody(Struct, forbid_unknown_fields=True, frozen=True):
    """Requests refuse unknown fields, so a misspelt field is an error, not ignored."""


class RegisterPatient(RequestBody, frozen=True):
    name: Name
    email: Email
    birth_date: date
    consent: bool


class PatientRegistered(Struct):
    patient_id: UUID


class PatientRecord(Struct):
    """A patient's registry record; after an erasure the personal fields read as erased."""

    patient_id: UUID
    name: str
    email: str
    birth_date: date | None
    consent: bool
    erased: bool
    """The personal data was erased (GDPR art. 17): the fields above read "[erased]" and null."""


class RecordReadEntry(Struct):
    reader: str
    roles: str
    operation: str
    read_at: datetime


class PatientRecordAccessLog(Struct):
    """Who read the patient's record, and when, oldest first."""

    patient_id: UUID
    reads: list[RecordReadEntry]


class RegisterDoctor(RequestBody, frozen=True):
    name: Name
    specialty: Name


class DoctorRegistered(Struct):
    doctor_id: UUID


class DoctorStatus(Struct):
    doctor_id: UUID
    active: bool


class SlotToOpen(RequestBody, frozen=True):
    start: AwareDatetime
    duration_minutes: Minutes


class OpenSlots(RequestBody, frozen=True):
    slots: Annotated[list[SlotToOpen], Meta(min_length=1, max_length=500)]


class SlotsOpened(Struct):
    slot_ids: list[UUID]


class BookConsultation(RequestBody, frozen=True):
    patient_id: UUID
    doctor_id: UUID
    start: AwareDatetime
    reason: Text


class BookingAccepted(Struct):
    consultation_id: UUID
    saga_id: UUID
    status: ConsultationStatus


class Consultation(Struct):
    consultation_id: UUID
    patient_id: UUID
    doctor_id: UUID
    start: datetime
    status: ConsultationStatus
    reason: str
    rejection_reason: str | None


class CancelConsultation(RequestBody, frozen=True):
    reason: Text


class ConsultationCancelled(Struct):
    consultation_id: UUID
    status: ConsultationStatus


class AddNote(RequestBody, frozen=True):
    text: Text


class NoteAdded(Struct):
    consultation_id: UUID


class Notes(Struct):
    consultation_id: UUID
    notes: list[Note]


class AuditTrail(Struct):
    kind: str
    id: UUID
    version: int
    state: dict[str, Any]
    events: list[AuditedEvent]
    integrity: str | None = None
    """``verified`` when the stream's hash chain verifies, else what breaks it (``broken at version N:
    …``); ``null`` where the store keeps no chain (SQLite, embedded mode)."""


class Health(Struct):
    """A probe's answer; for readiness, ``checks`` names each dependency asked and whether it answered in time.
    ``degraded``: only derived state (the read models' Redis) is down, so queries answer 503 while commands
    are served; the process stays ready."""

    status: Status
    checks: dict[str, bool] = msgspec.field(default_factory=dict)


class Problem(Struct, omit_defaults=True):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    correlation_id: str | None = None
    errors: list[dict[str, str]] | None = None


class ConsultationPage(Struct):
    items: list[Consultation]
    next_cursor: str | None


class Agenda(Struct):
    doctor_id: UUID
    date: date
    consultations: list[Consultation]


class SlotListing(Struct):
    slot_id: UUID
    start: datetime
    duration_minutes: int
    status: str


class DoctorSlots(Struct):
    doctor_id: UUID
    date: date
    slots: list[SlotListing]


class ConsultationState(Struct, omit_defaults=True):
    """Where the consultation stands, and why when the state has a reason (v2)."""

    code: ConsultationStatus
    reason: str | None = None
    """Why it was rejected (e.g. ``slot_unavailable``); absent in states without a reason."""


class ConsultationV2(Struct):
    """A consultation (v2): the patient's reason for the visit is named so, the status carries its own reason,
    and the version ``If-Match`` needs is in the body as well as the ``ETag``."""

    consultation_id: UUID
    version: int
    patient_id: UUID
    doctor_id: UUID
    start: AwareDatetime
    reason_for_visit: str
    status: ConsultationState
