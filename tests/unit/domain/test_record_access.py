"""PatientRecordAccess: every read of a patient's record leaves who, as what, through what, when."""

from __future__ import annotations

import uuid

import pytest

from domain.record_access import PatientRecordAccess


def test_given_a_patient_when_the_record_is_read_then_the_read_names_reader_roles_and_operation():
    patient_id = uuid.uuid4()
    log = PatientRecordAccess(patient_id=patient_id)
    log.record_read("ops-1", "ADMIN", "getPatient")
    (opened, read) = log.collect_events()
    assert isinstance(opened, PatientRecordAccess.Opened) and opened.patient_id == patient_id
    assert isinstance(read, PatientRecordAccess.Read)
    assert (read.reader, read.roles, read.operation) == ("ops-1", "ADMIN", "getPatient")
    assert log.reads[0].read_at == read.timestamp


def test_one_log_per_patient_found_from_the_id_alone():
    patient_id = uuid.uuid4()
    assert PatientRecordAccess(patient_id=patient_id).id == PatientRecordAccess.create_id(patient_id)
    assert PatientRecordAccess.create_id(patient_id) != PatientRecordAccess.create_id(uuid.uuid4())


def test_a_read_without_a_reader_is_refused():
    with pytest.raises(ValueError):
        PatientRecordAccess(patient_id=uuid.uuid4()).record_read("", "ADMIN", "getPatient")
