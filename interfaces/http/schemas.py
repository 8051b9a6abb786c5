"""The API's request and response bodies: msgspec structs, decoded strictly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import Meta, Struct

from application.readiness import Status
from application.views import AuditedEvent, Note

AwareDatetime = Annotated[datetime, Meta(tz=True, description="RFC 3339 date-time with a timezone offset")]


@dataclass(frozen=True)
class Plausible:
    """The range a date or date-time in a request body must fall in to be believed: from ``earliest`` to
    ``ahead`` after the moment of the request. Its ``description`` documents it in the schema; the
    request's decoding (``strict.decode_strictly``) enforces it."""

    earliest: date
    ahead: timedelta
    latest_in_words: str

    @property
    def description(self) -> str:
        return f"not before {self.earliest.isoformat()} and not after {self.latest_in_words}"

    def refusal(self, value: date, now: datetime) -> str | None:
        """Why ``value`` (a date or a date-time) is not plausible at ``now`` (``None``: it is)."""
        if isinstance(value, datetime):
            plausible = datetime.combine(self.earliest, time(), UTC) <= value <= now + self.ahead
        else:
            plausible = self.earliest <= value <= (now + self.ahead).date()
        return None if plausible else f"{value.isoformat()} is out of range: {self.description}"


SLOT_START = Plausible(date(2000, 1, 1), timedelta(days=730), "now plus 730 days (two years)")
"""A slot's start (opening or booking it): the clinic's records start in 2000, and it plans two years ahead."""
BIRTH_DATE = Plausible(date(1900, 1, 1), timedelta(hours=14), "today (in the earliest time zone, UTC+14)")
"""A patient's birth date: not in the future anywhere on Earth, and no one alive was born before 1900."""
SlotStart = Annotated[AwareDatetime, Meta(description=f"RFC 3339 date-time with a timezone offset, "
                                                      f"{SLOT_START.description}"), SLOT_START]
BirthDate = Annotated[date, Meta(description=f"RFC 3339 full-date, {BIRTH_DATE.description}"), BIRTH_DATE]
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
    birth_date: BirthDate
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


class Doctor(Struct):
    """A doctor as the directory shows them: ``active`` while they take bookings."""

    doctor_id: UUID
    name: str
    specialty: str
    active: bool


class DoctorPage(Struct):
    items: list[Doctor]
    next_cursor: str | None


class DoctorStatus(Struct):
    doctor_id: UUID
    active: bool


class SlotToOpen(RequestBody, frozen=True):
    start: SlotStart
    duration_minutes: Minutes


class OpenSlots(RequestBody, frozen=True):
    slots: Annotated[list[SlotToOpen], Meta(min_length=1, max_length=500)]


class SlotsOpened(Struct):
    slot_ids: list[UUID]


WallClock = Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="Local time, `HH:MM`")]


class OpenAvailability(RequestBody, frozen=True):
    """Slots of ``slot_minutes`` from ``opens`` to ``closes`` (wall-clock time in ``time_zone``) on each of
    ``weekdays``, for ``weeks`` weeks from ``first_day``."""

    weekdays: Annotated[list[Literal["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]], Meta(min_length=1, max_length=7)]
    opens: WallClock
    closes: WallClock
    slot_minutes: Minutes
    first_day: date
    weeks: Annotated[int, Meta(ge=1, le=12)]
    time_zone: Annotated[str, Meta(min_length=1, max_length=64, description="IANA time zone, e.g. `Europe/Lisbon`")]


class AvailabilityOpened(Struct):
    """The slots this call opened, and how many of the recurrence's slots were open already."""

    slot_ids: list[UUID]
    already_open: int


class SlotStatus(Struct):
    """A slot's status after closing or reopening it."""

    slot_id: UUID
    status: Literal["OPEN", "HELD", "BOOKED", "CLOSED"]


class BookConsultation(RequestBody, frozen=True):
    patient_id: UUID
    doctor_id: UUID
    start: SlotStart
    reason: Text


class BookingAccepted(Struct):
    consultation_id: UUID
    saga_id: UUID
    status: ConsultationStatus


class RescheduleConsultation(RequestBody, frozen=True):
    start: SlotStart
    """The new start: one of the same doctor's open slots."""


class RescheduleAccepted(Struct):
    """The reschedule is under way: its saga moves the consultation or leaves it as it was."""

    consultation_id: UUID
    saga_id: UUID
    start: datetime
    status: Literal["pending"]


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


class ConsultationEnded(Struct):
    """How a confirmed consultation ended: ``COMPLETED``, or ``NO_SHOW`` when the patient did not come."""

    consultation_id: UUID
    status: Literal["COMPLETED", "NO_SHOW"]


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


class RescheduleState(Struct, omit_defaults=True):
    """The last reschedule asked (v2): ``pending`` while the reschedule saga runs (``start``: where it moves
    the consultation), ``failed`` when it did not happen (``reason``; the consultation kept its start)."""

    status: Literal["pending", "failed"]
    start: AwareDatetime | None = None
    reason: str | None = None


class ConsultationV2(Struct, omit_defaults=True):
    """A consultation (v2): the patient's reason for the visit is named so, the status carries its own reason,
    and the version ``If-Match`` needs is in the body as well as the ``ETag``."""

    consultation_id: UUID
    version: int
    patient_id: UUID
    doctor_id: UUID
    start: AwareDatetime
    reason_for_visit: str
    status: ConsultationState
    reschedule: RescheduleState | None = None
    """Absent unless a reschedule is under way or the last one failed."""


WebhookEventType = Literal["consultation.confirmed", "consultation.rejected", "consultation.cancelled",
                           "consultation.rescheduled", "consultation.reschedule_failed", "consultation.completed",
                           "consultation.no_show"]


class CreateWebhook(RequestBody, frozen=True):
    """Where to send which outcomes: ``url`` (https) receives a signed POST for each."""

    url: Annotated[str, Meta(min_length=8, max_length=2048, examples=["https://app.example.org/hooks/clinic"],
                             description="An https URL; it receives a POST for each outcome")]
    events: Annotated[list[WebhookEventType], Meta(min_length=1, max_length=7,
                                                   description="The outcomes to receive")]


class Webhook(Struct):
    """A webhook subscription: ``audience`` says whose consultations it hears of (``own``: the caller's as
    patient or doctor; ``all``: every consultation, for the clinic's staff)."""

    webhook_id: UUID
    url: str
    events: list[str]
    audience: Literal["own", "all"]
    created_at: datetime
    version: int


class WebhookCreated(Webhook):
    """The new subscription and its signing secret, shown only here and when the same request is repeated
    with its ``Idempotency-Key``: keep it to verify each delivery's ``webhook-signature``."""

    secret: str


class WebhookList(Struct):
    items: list[Webhook]


class WebhookDelivery(Struct):
    """One outcome sent to the subscription: ``pending`` (not yet taken; ``next_attempt_at`` says when it is
    tried again), ``delivered`` (the URL answered 2xx) or ``failed`` (given up)."""

    delivery_id: UUID
    event_type: str
    consultation_id: UUID
    created_at: datetime
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None


class WebhookDeliveryPage(Struct):
    items: list[WebhookDelivery]
    next_cursor: str | None


class SagaSummary(Struct):
    """A booking or reschedule saga as a list shows it: whose, since when, how it stands."""

    saga_id: UUID
    kind: Literal["booking", "reschedule"]
    consultation_id: UUID
    patient_id: UUID
    doctor_id: UUID
    started_at: datetime
    state: str
    rejection_reason: str | None
    deadline: datetime
    waiting_since: datetime
    """Since when it is on its current step (the first asking, for a step asked again)."""
    stuck: bool
    """Open, and past its deadline or on one step too long (as `state=stuck` lists it)."""
    correlation_id: str | None
    """The `X-Correlation-Id` of the request that started it."""
    trace_id: str | None
    """The W3C trace id of the request that started it, when it was traced."""


class SagaSummaryPage(Struct):
    items: list[SagaSummary]
    next_cursor: str | None


class ReadModelLog(Struct):
    """How far a read model is into one event log it follows."""

    position: int
    head: int
    """The log's last notification."""
    lag: int
    """Events recorded in the log and not yet applied."""
    lag_seconds: float
    """How long ago the oldest event not yet applied was recorded (0: none): how stale the read model is."""


class ReadModelBuilding(Struct):
    """A new version being built beside the serving one (by the projection worker or `clinic projections
    rebuild`): readers switch to it once it has caught up."""

    version: int
    code_version: int
    lag: int
    """Events still to apply to it."""


class ReadModelRebuild(Struct):
    """The last rebuild started through the API (or the console), as it moves."""

    started_at: datetime
    state: Literal["running", "done", "failed"]
    percent: Annotated[int, Meta(ge=0, le=100)]
    version: int | None
    """The version it builds (`null` until its first step)."""
    done: int
    """Events applied to the new version so far."""
    total: int
    """Events to apply in all (the logs' heads)."""
    events_per_second: float | None
    eta_seconds: float | None
    """Until it has caught up, at this rate (`null`: no rate yet, or ended)."""
    error: str | None
    """Why it failed (a rebuild started again resumes it)."""


class ReadModel(Struct):
    """A projection: the version readers use, the code's, how far it is into each log it follows."""

    name: str
    serving_version: int
    code_version: int
    """A rebuild brings the serving version up to this."""
    lag: int
    lag_seconds: float
    logs: dict[str, ReadModelLog]
    """By the event log's name."""
    building: ReadModelBuilding | None
    last_rebuild: ReadModelRebuild | None


class ReadModelList(Struct):
    items: list[ReadModel]


class ReadModelRebuildStarted(Struct):
    """A rebuild accepted: follow it at `Location` (`last_rebuild`, or `streamReadModelRebuild`)."""

    name: str
    started_at: datetime
    """When the rebuild this request started (or joined: one under way, or the one its key started) began."""


class SagaActionTaken(Struct):
    """An operator's action on a saga, recorded in its stream with the operator as the actor; read the saga
    (``Location``) for what it led to."""

    saga_id: UUID
    action: Literal["retry-validation", "compensate"]
