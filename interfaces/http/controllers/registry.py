"""Patients, doctors (registry) and doctors' slots (scheduling): writes are for admins."""

from __future__ import annotations

from datetime import time
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from application.clinic import Clinic
from application.idempotency import created, nothing, once
from application.read_models import ReadModels
from application.record_access import PatientRecords
from application.registry import RegistryApplication
from application.scheduling import SchedulingApplication
from application.views import DoctorListing
from domain.availability import AvailabilityError, Weekday, WeeklyAvailability
from domain.values import Role
from infrastructure.security.tokens import Principal
from interfaces.http import access
from interfaces.http.access import requires_role
from interfaces.http.controllers.consultations import (
    EVENT_POSITION,
    EVENT_POSITION_HEADER,
    FRESHNESS_HEADERS,
    Cursor,
    MinPosition,
    PageLimit,
    freshness_headers,
    read_after,
)
from interfaces.http.controllers.queries import Day
from interfaces.http.idempotency import IdempotencyKeyHeader, idempotency_key
from interfaces.http.problems import InvalidBodyError
from interfaces.http.schemas import (
    AvailabilityOpened,
    Doctor,
    DoctorPage,
    DoctorRegistered,
    DoctorSlots,
    DoctorStatus,
    OpenAvailability,
    OpenSlots,
    PatientRecord,
    PatientRecordAccessLog,
    PatientRegistered,
    RecordReadEntry,
    RegisterDoctor,
    RegisterPatient,
    SlotListing,
    SlotsOpened,
    SlotStatus,
)


class PatientController(Controller):
    path = "/v1/patients"
    tags = ["registry"]

    @post(operation_id="registerPatient", summary="Register a patient", status_code=201, sync_to_thread=True,
          guards=[requires_role(Role.ADMIN)])
    def register(self, data: JSONBody[RegisterPatient], clinic: NamedDependency[Clinic],
                 request: Request[Principal, Any, Any], idempotency: IdempotencyKeyHeader = None) -> PatientRegistered:
        """Register a patient with their consent to data processing."""
        registry = clinic.require(RegistryApplication)
        patient_id = once(registry, idempotency_key(request, idempotency, data), lambda: registry.register_patient(
            data.name, data.email, data.birth_date, data.consent), created)
        return PatientRegistered(patient_id=patient_id)

    @get("/{patient_id:uuid}", operation_id="getPatient", summary="Read a patient's record", sync_to_thread=True)
    def read(self, patient_id: FromPath[UUID], clinic: NamedDependency[Clinic],
             request: Request[Principal, Any, Any]) -> PatientRecord:
        """The patient's record (the patient themself or an admin); every read is recorded in its access log."""
        principal = request.user
        access.allow(access.is_self_or_admin(principal, str(patient_id), Role.PATIENT), NOT_ALLOWED)
        view = clinic.require(PatientRecords).read(patient_id, principal.sub, principal.roles, "getPatient")
        return PatientRecord(view.patient_id, view.name, view.email, view.birth_date, view.consent, view.erased)

    @get("/{patient_id:uuid}/access-log", operation_id="listPatientRecordAccess",
         summary="List who read a patient's record", sync_to_thread=True)
    def access_log(self, patient_id: FromPath[UUID], clinic: NamedDependency[Clinic],
                   request: Request[Principal, Any, Any]) -> PatientRecordAccessLog:
        """Who read the patient's record, and when: the patient themself, auditors and admins."""
        principal = request.user
        access.allow(principal.has_role(Role.AUDITOR) or access.is_self_or_admin(principal, str(patient_id),
                                                                                 Role.PATIENT), NOT_ALLOWED)
        reads = [RecordReadEntry(r.reader, r.roles, r.operation, r.read_at)
                 for r in clinic.require(PatientRecords).accesses(patient_id)]
        return PatientRecordAccessLog(patient_id, reads)


NOT_ALLOWED = "only the patient themself or an admin"


class DoctorController(Controller):
    path = "/v1/doctors"
    tags = ["registry"]

    @get(operation_id="listDoctors", summary="Find doctors", sync_to_thread=True, response_headers=FRESHNESS_HEADERS)
    def list(self, clinic: NamedDependency[Clinic],
             specialty: Annotated[str | None, QueryParameter(
                 required=False, min_length=1, max_length=100,
                 description="Only doctors of this specialty (any letter case)")] = None,
             active: Annotated[bool | None, QueryParameter(
                 required=False, description="`true`: only doctors taking bookings; `false`: only the others")] = None,
             cursor: Cursor = None,
             limit: PageLimit = 20,
             min_position: MinPosition = None) -> Response[DoctorPage]:
        """The clinic's doctors, newest registered first (read model); any signed-in caller."""
        stale = read_after(clinic, min_position)
        page = clinic.require(ReadModels).doctors(specialty, active, cursor, limit)
        body = DoctorPage([_doctor(d) for d in page.items], page.next_cursor)
        return Response(body, headers={**freshness_headers(clinic, "doctor_directory"), **stale})

    @get("/{doctor_id:uuid}", operation_id="getDoctor", summary="Read a doctor", sync_to_thread=True,
         response_headers=FRESHNESS_HEADERS)
    def read(self, doctor_id: FromPath[UUID], clinic: NamedDependency[Clinic],
             min_position: MinPosition = None) -> Response[Doctor]:
        """A doctor's name, specialty and whether they take bookings (read model); any signed-in caller."""
        stale = read_after(clinic, min_position)
        doctor = _doctor(clinic.require(ReadModels).doctor(doctor_id))
        return Response(doctor, headers={**freshness_headers(clinic, "doctor_directory"), **stale})

    @post(operation_id="registerDoctor", summary="Register a doctor", status_code=201, sync_to_thread=True,
          guards=[requires_role(Role.ADMIN)])
    def register(self, data: JSONBody[RegisterDoctor], clinic: NamedDependency[Clinic],
                 request: Request[Principal, Any, Any], idempotency: IdempotencyKeyHeader = None) -> DoctorRegistered:
        """Register an active doctor."""
        registry = clinic.require(RegistryApplication)
        return DoctorRegistered(doctor_id=once(registry, idempotency_key(request, idempotency, data),
                                               lambda: registry.register_doctor(data.name, data.specialty), created))

    @post("/{doctor_id:uuid}/deactivate", operation_id="deactivateDoctor",
          summary="Deactivate a doctor", status_code=200, sync_to_thread=True, guards=[requires_role(Role.ADMIN)])
    def deactivate(self, doctor_id: FromPath[UUID], clinic: NamedDependency[Clinic],
                   request: Request[Principal, Any, Any], idempotency: IdempotencyKeyHeader = None) -> DoctorStatus:
        """Stop a doctor taking new bookings (bookings in flight are compensated)."""
        registry = clinic.require(RegistryApplication)
        once(registry, idempotency_key(request, idempotency), lambda: registry.deactivate_doctor(doctor_id), nothing)
        return DoctorStatus(doctor_id=doctor_id, active=False)


class SlotController(Controller):
    """A doctor's slots: the scheduling context's part of ``/v1/doctors``."""

    path = "/v1/doctors"
    tags = ["scheduling"]

    @get("/{doctor_id:uuid}/slots", operation_id="listDoctorSlots",
         summary="List a doctor's slots for a day", sync_to_thread=True, response_headers=FRESHNESS_HEADERS)
    def list_slots(self, doctor_id: FromPath[UUID], date: Day, clinic: NamedDependency[Clinic],
                   status: Annotated[Literal["available"] | None, QueryParameter(
                       required=False, description="`available`: only the open slots a patient can book")] = None,
                   min_position: MinPosition = None) -> Response[DoctorSlots]:
        """The doctor's slots that day (read model); ``status=available``: the open ones a patient can pick."""
        stale = read_after(clinic, min_position)
        listings = clinic.require(ReadModels).slots(doctor_id, date, available_only=status == "available")
        body = DoctorSlots(doctor_id, date, [SlotListing(s.slot_id, s.start, s.duration_minutes, s.status)
                                             for s in listings])
        return Response(body, headers={**freshness_headers(clinic, "doctor_slots"), **stale})

    @post("/{doctor_id:uuid}/slots", operation_id="openSlots",
          summary="Open slots in a doctor's agenda", status_code=201, sync_to_thread=True,
          response_headers=[EVENT_POSITION_HEADER],
          guards=[requires_role(Role.ADMIN)])
    def open_slots(self, doctor_id: FromPath[UUID], data: JSONBody[OpenSlots], clinic: NamedDependency[Clinic],
                   request: Request[Principal, Any, Any],
                   idempotency: IdempotencyKeyHeader = None) -> Response[SlotsOpened]:
        """Open slots in the doctor's agenda, all or none; an existing slot is a 409."""
        slot_ids = clinic.open_slots(doctor_id, [(s.start, s.duration_minutes) for s in data.slots],
                                     key=idempotency_key(request, idempotency, data))
        return Response(SlotsOpened(slot_ids=slot_ids), status_code=201,
                        headers={EVENT_POSITION: clinic.position(clinic.require(SchedulingApplication))})

    @post("/{doctor_id:uuid}/slots/{slot_id:uuid}/close", operation_id="closeSlot",
          summary="Withdraw an open slot from booking", status_code=200, sync_to_thread=True,
          response_headers=[EVENT_POSITION_HEADER])
    def close_slot(self, doctor_id: FromPath[UUID], slot_id: FromPath[UUID], clinic: NamedDependency[Clinic],
                   request: Request[Principal, Any, Any],
                   idempotency: IdempotencyKeyHeader = None) -> Response[SlotStatus]:
        """The doctor (or an admin) closes an open slot; a held or booked one is a 409 ``slot-in-use``,
        closing a closed one changes nothing."""
        return _change_slot(clinic, request, doctor_id, slot_id, idempotency, "CLOSED")

    @post("/{doctor_id:uuid}/slots/{slot_id:uuid}/reopen", operation_id="reopenSlot",
          summary="Offer a closed slot for booking again", status_code=200, sync_to_thread=True,
          response_headers=[EVENT_POSITION_HEADER])
    def reopen_slot(self, doctor_id: FromPath[UUID], slot_id: FromPath[UUID], clinic: NamedDependency[Clinic],
                    request: Request[Principal, Any, Any],
                    idempotency: IdempotencyKeyHeader = None) -> Response[SlotStatus]:
        """The doctor (or an admin) reopens a closed slot; reopening one that is not closed changes nothing."""
        return _change_slot(clinic, request, doctor_id, slot_id, idempotency, "OPEN")

    @post("/{doctor_id:uuid}/availability", operation_id="openAvailability",
          summary="Open a doctor's recurring slots", status_code=201, sync_to_thread=True,
          response_headers=[EVENT_POSITION_HEADER])
    def open_availability(self, doctor_id: FromPath[UUID], data: JSONBody[OpenAvailability],
                          clinic: NamedDependency[Clinic], request: Request[Principal, Any, Any],
                          idempotency: IdempotencyKeyHeader = None) -> Response[AvailabilityOpened]:
        """The doctor (or an admin) opens, in one call, e.g. weekdays 09:00 to 12:00 in 30-minute slots for four
        weeks, in the clinic's time zone (09:00 stays 09:00 across a daylight-saving change). Slots already
        open are left as they are, so asking again opens nothing new; at most 500 slots a call."""
        access.allow(access.is_self_or_admin(request.user, str(doctor_id), Role.DOCTOR), NOT_THE_DOCTOR)
        opened, already = clinic.open_availability(doctor_id, weekly(data),
                                                   key=idempotency_key(request, idempotency, data))
        return Response(AvailabilityOpened(opened, already), status_code=201,
                        headers={EVENT_POSITION: clinic.position(clinic.require(SchedulingApplication))})


NOT_THE_DOCTOR = "only the doctor themself or an admin"


def _doctor(listing: DoctorListing) -> Doctor:
    return Doctor(listing.doctor_id, listing.name, listing.specialty, listing.active)


def weekly(data: OpenAvailability) -> WeeklyAvailability:
    """The recurrence a request asks for; one that cannot be opened is a 422 naming why."""
    try:
        zone = ZoneInfo(data.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidBodyError(f"unknown time zone {data.time_zone!r} (an IANA name such as Europe/Lisbon)",
                               status=422, field="$.time_zone") from None
    try:
        return WeeklyAvailability(frozenset(Weekday[day] for day in data.weekdays), time.fromisoformat(data.opens),
                                  time.fromisoformat(data.closes), data.slot_minutes, data.first_day, data.weeks, zone)
    except AvailabilityError as error:
        raise InvalidBodyError(str(error), status=422, field="$") from None


def _change_slot(clinic: Clinic, request: Request[Principal, Any, Any], doctor_id: UUID, slot_id: UUID,
                 idempotency: str | None, to: str) -> Response[SlotStatus]:
    """Close (``to`` CLOSED) or reopen one of the doctor's slots, as the doctor or an admin."""
    access.allow(access.is_self_or_admin(request.user, str(doctor_id), Role.DOCTOR), NOT_THE_DOCTOR)
    scheduling = clinic.require(SchedulingApplication)
    change = scheduling.close_slot if to == "CLOSED" else scheduling.reopen_slot
    once(scheduling, idempotency_key(request, idempotency), lambda: change(slot_id, doctor_id), nothing)
    slot = scheduling.slot(slot_id)
    return Response(SlotStatus(slot_id, slot.status), headers={EVENT_POSITION: clinic.position(scheduling)})  # type: ignore[arg-type]
