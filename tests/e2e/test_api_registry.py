"""Patients, doctors and slots: admin-only registry writes."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import START, assert_problem, register_doctor

PATIENT = {"name": "Ana", "email": "ana@example.org", "birth_date": "1990-01-01", "consent": True}
DOCTOR = {"name": "Dr Rui", "specialty": "gp"}
SLOTS = {"slots": [{"start": START, "duration_minutes": 30}]}


def test_admin_registers_a_patient(api, admin):
    response = api.post("/v1/patients", json=PATIENT, headers=admin)
    assert response.status_code == 201
    assert uuid.UUID(response.json()["patient_id"])


def test_admin_registers_a_doctor(api, admin):
    response = api.post("/v1/doctors", json=DOCTOR, headers=admin)
    assert response.status_code == 201
    assert uuid.UUID(response.json()["doctor_id"])


def test_admin_deactivates_a_doctor(api, admin):
    doctor_id = register_doctor(api, admin)
    response = api.post(f"/v1/doctors/{doctor_id}/deactivate", headers=admin)
    assert response.status_code == 200
    assert response.json() == {"doctor_id": doctor_id, "active": False}


def test_deactivating_an_unknown_doctor_is_404(api, admin):
    assert_problem(api.post(f"/v1/doctors/{uuid.uuid4()}/deactivate", headers=admin), 404, "not-found")


def test_admin_opens_several_slots_at_once(api, admin):
    doctor_id = register_doctor(api, admin)
    body = {"slots": [{"start": START, "duration_minutes": 30},
                      {"start": "2027-01-05T09:30:00+00:00", "duration_minutes": 30}]}
    response = api.post(f"/v1/doctors/{doctor_id}/slots", json=body, headers=admin)
    assert response.status_code == 201
    assert len(set(response.json()["slot_ids"])) == 2


def test_opening_a_slot_that_already_exists_is_409(api, admin):
    # given a slot already open at START
    doctor_id = register_doctor(api, admin)
    assert api.post(f"/v1/doctors/{doctor_id}/slots", json=SLOTS, headers=admin).status_code == 201
    # when it is opened again, then
    assert_problem(api.post(f"/v1/doctors/{doctor_id}/slots", json=SLOTS, headers=admin), 409, "slot-already-open")


def test_the_same_start_written_in_another_offset_is_the_same_slot(api, admin):
    doctor_id = register_doctor(api, admin)
    api.post(f"/v1/doctors/{doctor_id}/slots", json=SLOTS, headers=admin)
    same = {"slots": [{"start": "2027-01-05T10:00:00+01:00", "duration_minutes": 30}]}
    assert_problem(api.post(f"/v1/doctors/{doctor_id}/slots", json=same, headers=admin), 409)


def test_opening_slots_for_an_unknown_doctor_is_404(api, admin):
    assert_problem(api.post(f"/v1/doctors/{uuid.uuid4()}/slots", json=SLOTS, headers=admin), 404, "not-found")


@pytest.mark.parametrize("slot, field", [
    ({"start": 0, "duration_minutes": 30}, "$.slots[0].start"),
    ({"start": "2027-01-05T09:00:00", "duration_minutes": 30}, "$.slots[0].start"),
    ({"start": START, "duration_minutes": 0}, "$.slots[0].duration_minutes"),
    ({"start": START, "duration_minutes": "30"}, "$.slots[0].duration_minutes"),
])
def test_an_invalid_slot_is_422_naming_the_field(api, admin, slot, field):
    doctor_id = register_doctor(api, admin)
    response = api.post(f"/v1/doctors/{doctor_id}/slots", json={"slots": [slot]}, headers=admin)
    assert assert_problem(response, 422, "invalid-input")["errors"][0]["field"] == field


def test_opening_no_slots_is_422(api, admin):
    doctor_id = register_doctor(api, admin)
    assert_problem(api.post(f"/v1/doctors/{doctor_id}/slots", json={"slots": []}, headers=admin), 422)


@pytest.mark.parametrize("change, field", [
    ({"email": "not-an-email"}, "$.email"),
    ({"birth_date": "01/01/1990"}, "$.birth_date"),
    ({"consent": "yes"}, "$.consent"),
    ({"name": ""}, "$.name"),
])
def test_an_invalid_patient_is_422_naming_the_field(api, admin, change, field):
    response = api.post("/v1/patients", json=PATIENT | change, headers=admin)
    assert assert_problem(response, 422, "invalid-input")["errors"][0]["field"] == field


def test_an_unknown_field_in_a_registration_is_422(api, admin):
    assert_problem(api.post("/v1/doctors", json=DOCTOR | {"specialtyy": "gp"}, headers=admin), 422, "invalid-input")


WRITES = [
    ("/v1/patients", PATIENT),
    ("/v1/doctors", DOCTOR),
    ("/v1/doctors/{doctor_id}/deactivate", None),
    ("/v1/doctors/{doctor_id}/slots", SLOTS),
]


@pytest.mark.parametrize("path, body", WRITES)
@pytest.mark.parametrize("role", ["PATIENT", "DOCTOR", "AUDITOR"])
def test_registry_writes_are_forbidden_to_non_admins(api, admin, token, path, body, role):
    doctor_id = register_doctor(api, admin)
    response = api.post(path.format(doctor_id=doctor_id), json=body, headers=token(doctor_id, role))
    # a doctor's token may write slots (closing, reopening, availability), but opening them is the admin's
    slots_by_doctor = role == "DOCTOR" and path.endswith("/slots")
    assert_problem(response, 403, "forbidden" if slots_by_doctor else "insufficient-scope")


@pytest.mark.parametrize("path, body", WRITES)
def test_registry_writes_need_a_token(api, admin, path, body):
    doctor_id = register_doctor(api, admin)
    assert_problem(api.post(path.format(doctor_id=doctor_id), json=body), 401, "unauthenticated")
