"""Event histories made by real aggregates, saved into the clinic's applications in order.

A history is a list of commands (hypothesis draws them); running it on a ``History`` applies each
to a Consultation, Slot, BookingSaga or RescheduleSaga through its own methods, ignoring refusals, and saves the
aggregate into its context's application, which numbers the notifications of each leader in order.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from hypothesis import strategies as st

from application.bootstrap import build_applications
from application.settings import Settings
from domain.base import DomainError
from domain.consultation import Consultation
from domain.doctor import Doctor
from domain.patient import Patient
from domain.personal_data import ERASED
from domain.slot import Slot, slot_id_for
from domain.values import RejectionReason
from process_managers.booking_saga import BookingSaga, TableSaga
from process_managers.reschedule_saga import RescheduleSaga
from projections.catalog import ALL_PROJECTIONS
from projections.values import epoch, iso, utc_day

T0 = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)
STARTS = [T0 + timedelta(hours=h) for h in (1, 2, 23, 25, 49)]  # several UTC days
PEOPLE = [UUID(int=i + 1) for i in range(3)]
DOCTORS = [UUID(int=i + 101) for i in range(3)]
"""Doctors registered in the registry (their own ids: the people above may be registered as patients)."""
DEADLINE = T0 + timedelta(seconds=30)
MOMENTS = [T0, DEADLINE, DEADLINE + timedelta(minutes=1)]

CONSULTATION_COMMANDS = ["confirm", "reject", "cancel_by_patient", "cancel_by_clinic", "complete",
                         "mark_no_show", "add_note", "reschedule"]
SLOT_COMMANDS = ["hold", "book", "release", "close"]
SAGA_COMMANDS = ["record_slot_held", "record_validation_unavailable", "record_registrants_valid",
                 "record_slot_booked", "reject", "time_out", "release_after_cancellation", "record_moved",
                 "record_move_refused"]

index = st.integers(0, 5)
commands = st.one_of(
    st.tuples(st.just("request"), index, index, index),
    st.tuples(st.just("consultation"), index, st.sampled_from(CONSULTATION_COMMANDS), index),
    st.tuples(st.just("open"), index, index, index),
    st.tuples(st.just("slot"), index, st.sampled_from(SLOT_COMMANDS), index),
    st.tuples(st.just("start_saga"), index, index, index),
    st.tuples(st.just("start_reschedule"), index, index, index),
    st.tuples(st.just("saga"), index, st.sampled_from(SAGA_COMMANDS), index),
    st.tuples(st.just("erase"), index, st.just(""), st.just(0)),
    st.tuples(st.just("doctor"), index, st.sampled_from(["register", "deactivate", "reactivate"]), index),
)
"""One command: (kind, which aggregate or person, what, a parameter index)."""


def memory_apps() -> dict[str, Any]:
    """The clinic's four applications on in-memory stores, by name."""
    return build_applications(Settings(persistence="memory"))


class History:
    """Runs commands on real aggregates and saves them into ``apps`` (by context name)."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self.apps = apps
        self.consultations: list[Consultation] = []
        self.slots: list[Slot] = []
        self.sagas: list[TableSaga] = []
        self.rescheduled: set[UUID] = set()
        """Consultations asked to move at least once: their views carry the reschedule's fields."""
        self.erased: set[UUID] = set()
        self.doctors: dict[UUID, Doctor] = {}

    def run(self, command: tuple[str, int, Any, int]) -> None:
        """Apply one command (a refused one records nothing)."""
        kind, which, what, param = command
        handler = getattr(self, f"_{kind}")
        try:
            aggregate, app = handler(which, what, param)
        except DomainError:
            return
        if aggregate is not None:
            self.apps[app].save(aggregate)

    def _request(self, patient: int, doctor: int, start: int) -> tuple[Any, str]:
        consultation = Consultation(patient_id=_pick(PEOPLE, patient), doctor_id=_pick(PEOPLE, doctor),
                                    start=_pick(STARTS, start), reason=f"reason {start}")
        self.consultations.append(consultation)
        return consultation, "Consultations"

    def _consultation(self, which: int, what: str, param: int) -> tuple[Any, str]:
        if not self.consultations:
            return None, ""
        consultation = _pick(self.consultations, which)
        why = (f"why {param}",)
        if what == "reschedule":
            self._reschedule(consultation, param)
            return consultation, "Consultations"
        args = {"add_note": ("dr", f"note {param}"), "reject": why, "cancel_by_patient": why,
                "cancel_by_clinic": why}.get(what, ())
        getattr(consultation, what)(*args)
        return consultation, "Consultations"

    def _reschedule(self, consultation: Consultation, param: int) -> None:
        """Ask to move it, then (by ``param``) move it, record that it failed, or leave it under way."""
        if consultation.pending_reschedule is None:
            consultation.request_reschedule(_pick(STARTS, param))
            self.rescheduled.add(consultation.id)
        pending = consultation.pending_reschedule
        if pending is not None and param % 3 == 0:
            consultation.move(pending, consultation.rescheduling_to or T0)
        elif pending is not None and param % 3 == 1:
            consultation.reschedule_failed(pending, f"why {param}")

    def _erase(self, person: int, _what: str, _param: int) -> tuple[Any, str]:
        """Register the person as a patient (if not yet), then erase them through the registry's use case."""
        patient_id, registry = _pick(PEOPLE, person), self.apps["Registry"]
        if patient_id not in self.erased:
            registry.save(Patient._create(Patient.Registered, id=patient_id, name=f"name {person}",
                                          email=f"{person}@example.org", birth_date=T0.date(), consent=True))
        registry.erase_patient(patient_id)
        self.erased.add(patient_id)
        return None, ""

    def _doctor(self, which: int, what: str, specialty: int) -> tuple[Any, str]:
        """Register the doctor (in one of two specialties, written in either case), or change whether they
        take bookings."""
        doctor_id = _pick(DOCTORS, which)
        if what == "register":
            if doctor_id in self.doctors:
                return None, ""
            self.doctors[doctor_id] = Doctor._create(Doctor.Registered, id=doctor_id, name=f"Dr {which}",
                                                     specialty=_pick(["Cardiology", "cardiology", "GP"], specialty))
        elif doctor_id in self.doctors:
            getattr(self.doctors[doctor_id], what)()
        return self.doctors.get(doctor_id), "Registry"

    def _open(self, doctor: int, start: int, minutes: int) -> tuple[Any, str]:
        doctor_id, moment = _pick(PEOPLE, doctor), _pick(STARTS, start)
        if any(slot.id == slot_id_for(doctor_id, moment) for slot in self.slots):
            return None, ""
        slot = Slot(doctor_id=doctor_id, start=moment, duration_minutes=15 * (minutes + 1))
        self.slots.append(slot)
        return slot, "Scheduling"

    def _slot(self, which: int, what: str, booking: int) -> tuple[Any, str]:
        if not self.slots:
            return None, ""
        slot, booking_id = _pick(self.slots, which), _pick(PEOPLE, booking)
        if what == "hold":
            slot.hold(booking_id, _pick(MOMENTS, booking + 1), T0)
        elif what == "close":
            slot.close()
        else:
            getattr(slot, what)(booking_id, *(("released",) if what == "release" else ()))
        return slot, "Scheduling"

    def _start_saga(self, patient: int, doctor: int, start: int) -> tuple[Any, str]:
        saga = BookingSaga(consultation_id=uuid4(), patient_id=_pick(PEOPLE, patient),
                           doctor_id=_pick(PEOPLE, doctor), slot_id=uuid4(), deadline=DEADLINE)
        self.sagas.append(saga)
        return saga, "Booking"

    def _start_reschedule(self, patient: int, doctor: int, start: int) -> tuple[Any, str]:
        saga = RescheduleSaga(consultation_id=uuid4(), request_version=start + 2, patient_id=_pick(PEOPLE, patient),
                              doctor_id=_pick(PEOPLE, doctor), slot_id=uuid4(), start=_pick(STARTS, start),
                              old_slot_id=uuid4(), old_holder=uuid4(), deadline=DEADLINE)
        self.sagas.append(saga)
        return saga, "Booking"

    def _saga(self, which: int, what: str, param: int) -> tuple[Any, str]:
        if not self.sagas:
            return None, ""
        saga = _pick(self.sagas, which)
        if what == "reject":
            saga.reject(_pick(list(RejectionReason), param))
        elif what == "time_out":
            saga.time_out(_pick(MOMENTS, param))
        elif what == "record_validation_unavailable":
            saga.record_validation_unavailable("registry down", _pick(MOMENTS, param))
        elif what == "release_after_cancellation":
            saga.release_after_cancellation("consultation_cancelled")
        elif hasattr(saga, what):  # record_moved and record_move_refused: reschedule sagas only
            getattr(saga, what)()
        return saga, "Booking"


def _pick(items: list[Any], i: int) -> Any:
    return items[i % len(items)]


def dump_all(store: Any) -> dict[str, Any]:
    """Every projection's view in ``store`` (current versions), by projection name."""
    return {p.name: store.dump(p.name, p.version) for p in ALL_PROJECTIONS}


def positions(store: Any) -> dict[tuple[str, str], int]:
    """Every projection's position in each of its leaders' logs."""
    return {(p.name, leader): store.position(p.name, p.version, leader) for p in ALL_PROJECTIONS
            for leader in p.leaders}


def expected_views(history: History) -> dict[str, dict[str, Any]]:
    """What each projection should show, computed from the aggregates' own state."""
    views: dict[str, dict[str, Any]] = {p.name: {} for p in ALL_PROJECTIONS}
    for c in history.consultations:
        views["consultation_detail"][f"consultation:{c.id}"] = {
            "consultation_id": str(c.id), "patient_id": str(c.patient_id), "doctor_id": str(c.doctor_id),
            "start": iso(c.start), "status": str(c.status),
            "reason": ERASED if c.patient_id in history.erased else c.reason,
            "rejection_reason": c.rejection_reason or "", "version": str(c.version)}
        if c.id in history.rescheduled:
            views["consultation_detail"][f"consultation:{c.id}"] |= {
                "rescheduling_to": iso(c.rescheduling_to) if c.rescheduling_to else "",
                "reschedule_failure": c.reschedule_failure or ""}
        _index(views["consultation_detail"], f"patient:{c.patient_id}:consultation_ids", c.id, c.start)
        _index(views["patient_consultations"], f"patient:{c.patient_id}:consultations", c.id, c.start)
        _index(views["doctor_agenda"], f"doctor:{c.doctor_id}:agenda:{utc_day(c.start)}", c.id, c.start)
    for d in history.doctors.values():
        views["doctor_directory"][f"doctor:{d.id}"] = {"doctor_id": str(d.id), "name": d.name,
                                                       "specialty": d.specialty, "active": str(d.active).lower()}
        _index(views["doctor_directory"], "doctors", d.id, d.created_on)
        _index(views["doctor_directory"], f"doctors:specialty:{d.specialty.lower()}", d.id, d.created_on)
    for patient_id in history.erased:
        views["consultation_detail"][f"patient:{patient_id}:erasure"] = {"reason": ERASED}
    for s in history.slots:
        views["doctor_slots"][f"slot:{s.id}"] = {
            "slot_id": str(s.id), "doctor_id": str(s.doctor_id), "start": iso(s.start),
            "duration_minutes": str(s.duration_minutes), "status": str(s.status),
            "booking_id": "" if s.booking_id is None else str(s.booking_id)}
        _index(views["doctor_slots"], f"doctor:{s.doctor_id}:slots:{utc_day(s.start)}", s.id, s.start)
    for saga in history.sagas:
        views["saga_status"][f"saga:{saga.id}"] = {
            "saga_id": str(saga.id), "consultation_id": str(saga.consultation_id), "state": str(saga.state),
            "rejection_reason": saga.rejection_reason or "", "deadline": iso(saga.deadline)}
        views["saga_status"][f"saga:{saga.id}:steps"] = [
            json.dumps({"name": s.name, "status": s.status, "at": iso(s.at)}, separators=(",", ":"))
            for s in saga.steps]
        aggregate = type(saga).__name__
        views["saga_list"][f"saga-listing:{saga.id}"] = {
            "saga_id": str(saga.id), "kind": {"BookingSaga": "booking", "RescheduleSaga": "reschedule"}[aggregate],
            "aggregate": aggregate, "consultation_id": str(saga.consultation_id), "patient_id": str(saga.patient_id),
            "doctor_id": str(saga.doctor_id), "started_at": iso(saga.created_on), "correlation_id": "",
            "trace_id": ""}
        _index(views["saga_list"], "sagas", saga.id, saga.created_on)
    return views


def _index(view: dict[str, Any], key: str, member: UUID, start: datetime) -> None:
    members = dict(view.get(key, []))
    members[str(member)] = epoch(start)
    view[key] = sorted(members.items(), key=lambda item: (item[1], item[0]))
