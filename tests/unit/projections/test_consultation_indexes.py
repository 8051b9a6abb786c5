"""patient_consultations and doctor_agenda: a request indexes the consultation, nothing else does."""

from __future__ import annotations

from projections.doctor_agenda import DoctorAgenda, doctor_agenda_key
from projections.ops import AddToIndex
from projections.patient_consultations import PatientConsultations, patient_consultations_key
from tests.unit.projections.events import DOCTOR, PATIENT, START, START_EPOCH, confirmed, requested


def test_a_request_is_indexed_under_its_patient_by_start():
    consultation, event = requested()
    assert PatientConsultations().changes(event) == [
        AddToIndex(f"patient:{PATIENT}:consultations", str(consultation.id), START_EPOCH)]
    assert patient_consultations_key(PATIENT) == f"patient:{PATIENT}:consultations"


def test_a_request_is_indexed_in_its_doctors_agenda_of_the_utc_day():
    consultation, event = requested()
    assert DoctorAgenda().changes(event) == [
        AddToIndex(f"doctor:{DOCTOR}:agenda:2027-01-05", str(consultation.id), START_EPOCH)]
    assert doctor_agenda_key(DOCTOR, START) == doctor_agenda_key(DOCTOR, "2027-01-05")


def test_later_events_leave_the_indexes_alone():
    _, event = confirmed()
    assert PatientConsultations().changes(event) == []
    assert DoctorAgenda().changes(event) == []


def test_both_read_consultations():
    assert PatientConsultations().leaders == DoctorAgenda().leaders == ("Consultations",)
    assert (PatientConsultations().name, DoctorAgenda().name) == ("patient_consultations", "doctor_agenda")
