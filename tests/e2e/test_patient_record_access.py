"""Reading a patient's record over HTTP, and the access log every such read leaves."""

from __future__ import annotations

import uuid

from tests.e2e.conftest import assert_problem, register_patient


def test_the_patient_reads_their_own_record_and_the_read_is_logged(api, admin, token):
    patient_id = register_patient(api, admin, "Ana")
    patient = token(patient_id, "PATIENT")
    record = api.get(f"/v1/patients/{patient_id}", headers=patient)
    assert record.status_code == 200, record.text
    assert record.json() | {"patient_id": patient_id} == {
        "patient_id": patient_id, "name": "Ana", "email": "ana@example.org", "birth_date": "1990-01-01",
        "consent": True, "erased": False}
    reads = api.get(f"/v1/patients/{patient_id}/access-log", headers=patient).json()["reads"]
    assert [(r["reader"], r["roles"], r["operation"]) for r in reads] == [(patient_id, "PATIENT", "getPatient")]


def test_admin_reads_and_an_auditors_audit_of_the_patient_are_logged_in_order(api, admin, token):
    patient_id = register_patient(api, admin, "Ana")
    assert api.get(f"/v1/patients/{patient_id}", headers=admin).status_code == 200
    assert api.get(f"/v1/audit/patient/{patient_id}", headers=token("auditor-7", "AUDITOR")).status_code == 200
    reads = api.get(f"/v1/patients/{patient_id}/access-log", headers=token("auditor-7", "AUDITOR")).json()["reads"]
    assert [(r["reader"], r["operation"]) for r in reads] == [("ops-1", "getPatient"), ("auditor-7", "auditAggregate")]
    assert reads[0]["read_at"] <= reads[1]["read_at"]


def test_a_refused_read_leaves_no_entry_and_reveals_nothing(api, admin, token):
    patient_id = register_patient(api, admin, "Ana")
    stranger = token(str(uuid.uuid4()), "PATIENT")
    theirs = assert_problem(api.get(f"/v1/patients/{patient_id}", headers=stranger), 403)
    missing = assert_problem(api.get(f"/v1/patients/{uuid.uuid4()}", headers=stranger), 403)
    assert theirs["detail"] == missing["detail"]
    assert api.get(f"/v1/patients/{patient_id}/access-log", headers=admin).json()["reads"] == []


def test_the_access_log_of_another_patient_is_refused(api, admin, token):
    patient_id = register_patient(api, admin, "Ana")
    assert_problem(api.get(f"/v1/patients/{patient_id}/access-log", headers=token(str(uuid.uuid4()), "PATIENT")),
                   403, "forbidden")


def test_an_admin_asking_for_an_unknown_patient_gets_404(api, admin):
    assert_problem(api.get(f"/v1/patients/{uuid.uuid4()}", headers=admin), 404, "not-found")


def test_an_auditors_audit_of_a_patient_at_the_terminal_is_logged_as_the_os_user(tmp_path):
    import getpass
    from datetime import date

    from application.bootstrap import migrate, open_stores
    from application.settings import Settings
    from tests.e2e.test_processes import run_clinic

    settings = Settings(persistence="sqlite", data_dir=tmp_path)
    migrate(settings)
    clinic = open_stores(settings)
    try:
        patient_id = clinic.registry.register_patient("Ana", "ana@example.org", date(1990, 1, 1), True)
    finally:
        clinic.close()
    audited = run_clinic("audit", "patient", str(patient_id), env={"CLINIC_DATA_DIR": str(tmp_path)})
    assert audited.returncode == 0, audited.stderr
    clinic = open_stores(settings)
    try:
        reads = clinic.patient_records.accesses(patient_id)
    finally:
        clinic.close()
    assert [(r.reader, r.operation) for r in reads] == [(f"cli:{getpass.getuser()}", "clinic audit")]
