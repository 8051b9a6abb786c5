"""consultation_detail: given a consultation's event, then exactly these hash writes."""

from __future__ import annotations

from datetime import date

import pytest

from domain.patient import Patient
from projections.consultation_detail import ConsultationDetail
from projections.ops import AddToIndex, CopyToMembers, SetFields
from tests.unit.projections.events import DOCTOR, PATIENT, START_EPOCH, confirmed, last_event, requested

projection = ConsultationDetail()


REDACT = CopyToMembers(f"patient:{PATIENT}:consultation_ids", "consultation:", f"patient:{PATIENT}:erasure")


def test_is_named_versioned_and_reads_consultations_and_the_registry():
    assert (projection.name, projection.version, projection.leaders) == (
        "consultation_detail", 2, ("Consultations", "Registry"))


def test_a_request_writes_every_field_indexes_it_under_its_patient_and_applies_an_erasure():
    consultation, event = requested()
    assert projection.changes(event) == [
        SetFields(f"consultation:{consultation.id}", {
            "consultation_id": str(consultation.id), "patient_id": str(PATIENT), "doctor_id": str(DOCTOR),
            "start": "2027-01-05T23:30:00+00:00", "status": "REQUESTED", "reason": "check-up",
            "rejection_reason": "", "version": "1"}),
        AddToIndex(f"patient:{PATIENT}:consultation_ids", str(consultation.id), START_EPOCH),
        REDACT,
    ]


def test_an_erasure_is_kept_and_copied_onto_every_consultation_of_the_patient():
    patient = Patient._create(Patient.Registered, id=PATIENT, name="Ada", email="ada@example.org",
                              birth_date=date(1990, 5, 1), consent=True)
    patient.collect_events()
    patient.erase()
    assert projection.changes(last_event(patient)) == [
        SetFields(f"patient:{PATIENT}:erasure", {"reason": "[erased]"}), REDACT]


def test_other_registry_events_change_nothing():
    patient = Patient(name="Ada", email="ada@example.org", birth_date=date(1990, 5, 1), consent=False)
    patient.give_consent()
    assert [projection.changes(event) for event in patient.collect_events()] == [[], []]


def test_a_confirmation_sets_status_and_version():
    consultation, event = confirmed()
    assert projection.changes(event) == [
        SetFields(f"consultation:{consultation.id}", {"version": "2", "status": "CONFIRMED"})]


def test_a_rejection_sets_its_reason():
    consultation, _ = requested()
    consultation.reject("slot_unavailable")
    assert projection.changes(last_event(consultation)) == [SetFields(
        f"consultation:{consultation.id}",
        {"version": "2", "status": "REJECTED", "rejection_reason": "slot_unavailable"})]


@pytest.mark.parametrize(("command", "args", "status"), [
    ("cancel_by_patient", ("ill",), "CANCELLED"),
    ("cancel_by_clinic", ("doctor away",), "CANCELLED"),
    ("complete", (), "COMPLETED"),
    ("mark_no_show", (), "NO_SHOW"),
])
def test_each_outcome_of_a_confirmed_consultation_sets_its_status(command, args, status):
    consultation, _ = confirmed()
    getattr(consultation, command)(*args)
    assert projection.changes(last_event(consultation)) == [
        SetFields(f"consultation:{consultation.id}", {"version": "3", "status": status})]


def test_a_note_only_moves_the_version():
    consultation, _ = confirmed()
    consultation.add_note("dr", "fine")
    assert projection.changes(last_event(consultation)) == [
        SetFields(f"consultation:{consultation.id}", {"version": "3"})]


def test_other_events_change_nothing():
    assert projection.changes(object()) == []
