"""consultation_detail: given a consultation's event, then exactly these hash writes."""

from __future__ import annotations

import pytest

from projections.consultation_detail import ConsultationDetail
from projections.ops import SetFields
from tests.unit.projections.events import DOCTOR, PATIENT, confirmed, last_event, requested

projection = ConsultationDetail()


def test_is_named_versioned_and_reads_consultations():
    assert (projection.name, projection.version, projection.leaders) == ("consultation_detail", 1, ("Consultations",))


def test_a_request_writes_every_field():
    consultation, event = requested()
    assert projection.changes(event) == [SetFields(f"consultation:{consultation.id}", {
        "consultation_id": str(consultation.id), "patient_id": str(PATIENT), "doctor_id": str(DOCTOR),
        "start": "2027-01-05T23:30:00+00:00", "status": "REQUESTED", "reason": "check-up",
        "rejection_reason": "", "version": "1"})]


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
