"""Booking, reading, cancelling consultations and the doctor's clinical notes."""

from __future__ import annotations

import uuid

import pytest

from process_managers.booking_saga import saga_id_for
from tests.e2e.conftest import assert_problem, book, open_slot, register_doctor, register_patient
from tests.kit import FakeRegistry, eventually


@pytest.fixture
def patient(token, world):
    return token(world.patient_id, "PATIENT")


@pytest.fixture
def confirmed(api, clinic, world, patient):
    """The id of the world's patient's CONFIRMED consultation with the world's doctor."""
    consultation_id = book(api, patient, world.patient_id, world.doctor_id).json()["consultation_id"]
    clinic.wait_until_settled()
    assert api.get(f"/v1/consultations/{consultation_id}", headers=patient).json()["status"] == "CONFIRMED"
    return consultation_id


@pytest.fixture
def rejected(api, admin, clinic, world, patient):
    """The id of a REJECTED consultation (no slot is open at its start)."""
    consultation_id = book(api, patient, world.patient_id, world.doctor_id, "2027-02-01T09:00:00Z").json()[
        "consultation_id"]
    clinic.wait_until_settled()
    return consultation_id


# Booking ---------------------------------------------------------------------


def test_a_patient_booking_for_themself_is_accepted_with_a_location(api, world, patient):
    response = book(api, patient, world.patient_id, world.doctor_id)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "REQUESTED"
    assert uuid.UUID(body["saga_id"])
    assert response.headers["location"] == f"/v1/consultations/{body['consultation_id']}"


def test_a_booking_is_confirmed_end_to_end(api, clinic, world, patient):
    # given a booking accepted for an open slot
    accepted = book(api, patient, world.patient_id, world.doctor_id).json()
    # when the saga has processed everything
    clinic.wait_until_settled()
    # then the consultation is confirmed
    response = api.get(f"/v1/consultations/{accepted['consultation_id']}", headers=patient)
    assert response.status_code == 200
    assert response.json() == {
        "consultation_id": accepted["consultation_id"], "patient_id": world.patient_id,
        "doctor_id": world.doctor_id, "start": "2027-01-05T09:00:00Z", "status": "CONFIRMED",
        "reason": "check-up", "rejection_reason": None,
    }
    assert response.headers["etag"] == '"2"'


def test_an_admin_may_book_for_a_patient(api, admin, world):
    assert book(api, admin, world.patient_id, world.doctor_id).status_code == 202


def test_a_patient_booking_for_someone_else_is_403(api, token, world):
    someone_else = token(str(uuid.uuid4()), "PATIENT")
    assert_problem(book(api, someone_else, world.patient_id, world.doctor_id), 403, "forbidden")


@pytest.mark.parametrize("role", ["DOCTOR", "AUDITOR"])
def test_only_patients_and_admins_may_book(api, token, world, role):
    assert_problem(book(api, token(world.patient_id, role), world.patient_id, world.doctor_id), 403, "insufficient-scope")


def test_booking_needs_a_token(api, world):
    assert_problem(book(api, {}, world.patient_id, world.doctor_id), 401, "unauthenticated")


@pytest.mark.parametrize("start", [0, "2027-01-05T09:00:00", "tomorrow"])
def test_booking_with_an_invalid_start_is_422_naming_start(api, world, patient, start):
    response = book(api, patient, world.patient_id, world.doctor_id, start)
    assert assert_problem(response, 422, "invalid-input")["errors"][0]["field"] == "$.start"


def test_a_second_booking_of_the_same_slot_is_rejected_slot_unavailable(api, admin, clinic, token, world, confirmed):
    # given the slot is booked by the world's patient; when another patient books it
    other = register_patient(api, admin, "Bea")
    second = book(api, token(other, "PATIENT"), other, world.doctor_id).json()["consultation_id"]
    clinic.wait_until_settled()
    # then the second is rejected
    body = api.get(f"/v1/consultations/{second}", headers=admin).json()
    assert (body["status"], body["rejection_reason"]) == ("REJECTED", "slot_unavailable")


def test_booking_a_deactivated_doctor_is_rejected_doctor_inactive(api, admin, clinic, world, patient):
    # given the doctor is deactivated after opening the slot
    assert api.post(f"/v1/doctors/{world.doctor_id}/deactivate", headers=admin).status_code == 200
    # when the patient books that slot
    consultation_id = book(api, patient, world.patient_id, world.doctor_id).json()["consultation_id"]
    clinic.wait_until_settled()
    # then
    body = api.get(f"/v1/consultations/{consultation_id}", headers=patient).json()
    assert (body["status"], body["rejection_reason"]) == ("REJECTED", "doctor_inactive")


def test_booking_where_no_slot_is_open_is_rejected_slot_unavailable(api, patient, rejected):
    body = api.get(f"/v1/consultations/{rejected}", headers=patient).json()
    assert (body["status"], body["rejection_reason"]) == ("REJECTED", "slot_unavailable")


# Reading ---------------------------------------------------------------------


def test_its_patient_its_doctor_and_an_admin_may_read_a_consultation(api, admin, token, world, confirmed):
    for headers in (token(world.patient_id, "PATIENT"), token(world.doctor_id, "DOCTOR"), admin):
        assert api.get(f"/v1/consultations/{confirmed}", headers=headers).status_code == 200


def test_a_doctor_reading_another_doctors_consultation_is_403(api, admin, token, confirmed):
    other_doctor = register_doctor(api, admin, "Dr Eva")
    response = api.get(f"/v1/consultations/{confirmed}", headers=token(other_doctor, "DOCTOR"))
    assert_problem(response, 403, "forbidden")


@pytest.mark.parametrize("role", ["PATIENT", "AUDITOR"])
def test_another_patient_or_an_auditor_may_not_read_a_consultation(api, token, confirmed, role):
    assert_problem(api.get(f"/v1/consultations/{confirmed}", headers=token(str(uuid.uuid4()), role)), 403)


def test_reading_an_unknown_consultation_is_404(api, admin):
    assert_problem(api.get(f"/v1/consultations/{uuid.uuid4()}", headers=admin), 404, "not-found")


def test_reading_a_consultation_needs_a_token(api, confirmed):
    assert_problem(api.get(f"/v1/consultations/{confirmed}"), 401, "unauthenticated")


# Cancelling ------------------------------------------------------------------


def test_a_patient_cancelling_frees_the_slot_for_a_new_booking(api, clinic, world, patient, confirmed):
    # when the patient cancels their confirmed consultation
    response = api.post(f"/v1/consultations/{confirmed}/cancel", json={"reason": "better"}, headers=patient)
    assert response.status_code == 200
    assert response.json() == {"consultation_id": confirmed, "status": "CANCELLED"}
    clinic.wait_until_settled()
    assert api.get(f"/v1/consultations/{confirmed}", headers=patient).json()["status"] == "CANCELLED"
    # then a new booking of the same start is confirmed
    again = book(api, patient, world.patient_id, world.doctor_id).json()["consultation_id"]
    clinic.wait_until_settled()
    assert api.get(f"/v1/consultations/{again}", headers=patient).json()["status"] == "CONFIRMED"


def test_an_admin_may_cancel_for_the_clinic(api, clinic, admin, confirmed):
    response = api.post(f"/v1/consultations/{confirmed}/cancel", json={"reason": "doctor ill"}, headers=admin)
    assert response.status_code == 200
    assert last_event(clinic, confirmed) == "CancelledByClinic"


def test_a_patient_cancels_as_the_patient(api, clinic, patient, confirmed):
    response = api.post(f"/v1/consultations/{confirmed}/cancel", json={"reason": "ill"}, headers=patient)
    assert response.status_code == 200
    assert last_event(clinic, confirmed) == "CancelledByPatient"


def last_event(clinic, consultation_id):
    return clinic.auditor.trail("consultation", uuid.UUID(consultation_id)).events[-1].type.split(".")[-1]


def test_cancelling_with_the_current_version_in_if_match_succeeds(api, patient, confirmed):
    etag = api.get(f"/v1/consultations/{confirmed}", headers=patient).headers["etag"]
    response = api.post(f"/v1/consultations/{confirmed}/cancel", json={"reason": "x"},
                        headers=patient | {"If-Match": etag})
    assert response.status_code == 200


def test_cancelling_with_if_match_any_version_succeeds(api, patient, confirmed):
    response = api.post(f"/v1/consultations/{confirmed}/cancel", json={"reason": "x"},
                        headers=patient | {"If-Match": "*"})
    assert response.status_code == 200


@pytest.mark.parametrize("tag", ['"abc"', '"-1"', "", 'W/"x2"'])
def test_cancelling_with_an_if_match_naming_no_version_is_409_and_cancels_nothing(api, patient, confirmed, tag):
    response = api.post(f"/v1/consultations/{confirmed}/cancel", json={"reason": "x"},
                        headers=patient | {"If-Match": tag})
    assert_problem(response, 409, "version-conflict")
    assert api.get(f"/v1/consultations/{confirmed}", headers=patient).json()["status"] == "CONFIRMED"


def test_cancelling_with_a_stale_if_match_is_409_version_conflict(api, patient, confirmed):
    # given the client last read version 1 (the consultation is now at 2)
    response = api.post(f"/v1/consultations/{confirmed}/cancel", json={"reason": "x"},
                        headers=patient | {"If-Match": '"1"'})
    assert_problem(response, 409, "version-conflict")
    assert api.get(f"/v1/consultations/{confirmed}", headers=patient).json()["status"] == "CONFIRMED"


def test_a_booking_cancelled_before_the_saga_decides_stops_the_saga_and_frees_the_slot(api, admin, clinic, world,
                                                                                      patient):
    # given a booking whose saga holds the slot and waits on the registry (the gate holds the call)
    clinic.booking.registry = FakeRegistry(inner=clinic.booking.registry, gated=True)
    consultation_id = book(api, patient, world.patient_id, world.doctor_id).json()["consultation_id"]
    eventually(lambda: clinic.scheduling.slot(uuid.UUID(world.slot_id)).status == "HELD", what="the hold")
    # when the patient cancels it while it is still REQUESTED
    response = api.post(f"/v1/consultations/{consultation_id}/cancel", json={"reason": "changed my mind"},
                        headers=patient)
    assert response.status_code == 200, response.text
    assert response.json() == {"consultation_id": consultation_id, "status": "CANCELLED"}
    # and the registry answers after all
    clinic.booking.registry.open()
    clinic.wait_until_settled()
    # then the consultation stays cancelled, the saga stopped, and the slot is free for another booking
    assert api.get(f"/v1/consultations/{consultation_id}", headers=patient).json()["status"] == "CANCELLED"
    saga = api.get(f"/v1/sagas/{saga_id_for(uuid.UUID(consultation_id))}", headers=admin).json()
    assert saga["state"] == "CANCELLED"
    assert [step["status"] for step in saga["steps"] if step["name"] == "release_slot"] == ["requested"]
    slots = api.get(f"/v1/doctors/{world.doctor_id}/slots?date={world.start[:10]}&status=available",
                    headers=patient).json()["slots"]
    assert [slot["start"] for slot in slots] == [world.start]


def test_cancelling_a_rejected_consultation_is_409_invalid_state(api, patient, rejected):
    response = api.post(f"/v1/consultations/{rejected}/cancel", json={"reason": "x"}, headers=patient)
    assert_problem(response, 409, "invalid-state")


def test_cancelling_twice_is_409_invalid_state(api, patient, confirmed):
    api.post(f"/v1/consultations/{confirmed}/cancel", json={"reason": "x"}, headers=patient)
    response = api.post(f"/v1/consultations/{confirmed}/cancel", json={"reason": "x"}, headers=patient)
    assert_problem(response, 409, "invalid-state")


@pytest.mark.parametrize("role", ["DOCTOR", "AUDITOR"])
def test_its_doctor_or_an_auditor_may_not_cancel(api, token, world, confirmed, role):
    sub = world.doctor_id if role == "DOCTOR" else "auditor-1"
    response = api.post(f"/v1/consultations/{confirmed}/cancel", json={"reason": "x"}, headers=token(sub, role))
    assert_problem(response, 403, "insufficient-scope")


def test_another_patient_may_not_cancel(api, token, confirmed):
    response = api.post(f"/v1/consultations/{confirmed}/cancel", json={"reason": "x"},
                        headers=token(str(uuid.uuid4()), "PATIENT"))
    assert_problem(response, 403, "forbidden")


def test_cancelling_an_unknown_consultation_is_404(api, admin):
    response = api.post(f"/v1/consultations/{uuid.uuid4()}/cancel", json={"reason": "x"}, headers=admin)
    assert_problem(response, 404, "not-found")


@pytest.mark.parametrize("body, field", [({"reason": ""}, "$.reason"), ({"reason": 1}, "$.reason")])
def test_cancelling_with_an_invalid_reason_is_422(api, patient, confirmed, body, field):
    response = api.post(f"/v1/consultations/{confirmed}/cancel", json=body, headers=patient)
    assert assert_problem(response, 422, "invalid-input")["errors"][0]["field"] == field


def test_cancelling_without_a_reason_is_422(api, patient, confirmed):
    assert_problem(api.post(f"/v1/consultations/{confirmed}/cancel", json={}, headers=patient), 422)


# Clinical notes --------------------------------------------------------------


def test_notes_added_by_its_doctor_are_listed_with_the_doctor_as_author(api, token, world, confirmed):
    doctor = token(world.doctor_id, "DOCTOR")
    # when the doctor writes two notes
    for text in ("BP 120/80", "follow up in 2 weeks"):
        assert api.post(f"/v1/consultations/{confirmed}/notes", json={"text": text}, headers=doctor).status_code == 201
    # then both are listed, oldest first, authored by the doctor
    response = api.get(f"/v1/consultations/{confirmed}/notes", headers=doctor)
    assert response.status_code == 200
    notes = response.json()["notes"]
    assert [(n["author"], n["text"]) for n in notes] == [(world.doctor_id, "BP 120/80"),
                                                          (world.doctor_id, "follow up in 2 weeks")]


def test_an_admin_may_add_and_read_notes(api, admin, confirmed):
    assert api.post(f"/v1/consultations/{confirmed}/notes", json={"text": "n"}, headers=admin).status_code == 201
    assert len(api.get(f"/v1/consultations/{confirmed}/notes", headers=admin).json()["notes"]) == 1


def test_its_patient_may_neither_add_nor_read_notes(api, patient, confirmed):
    assert_problem(api.post(f"/v1/consultations/{confirmed}/notes", json={"text": "n"}, headers=patient), 403)
    assert_problem(api.get(f"/v1/consultations/{confirmed}/notes", headers=patient), 403, "insufficient-scope")


def test_another_doctor_may_not_use_the_notes(api, admin, token, confirmed):
    other = token(register_doctor(api, admin, "Dr Eva"), "DOCTOR")
    assert_problem(api.post(f"/v1/consultations/{confirmed}/notes", json={"text": "n"}, headers=other), 403)
    assert_problem(api.get(f"/v1/consultations/{confirmed}/notes", headers=other), 403)


def test_a_note_on_a_rejected_consultation_is_409_invalid_state(api, admin, rejected):
    response = api.post(f"/v1/consultations/{rejected}/notes", json={"text": "n"}, headers=admin)
    assert_problem(response, 409, "invalid-state")


def test_notes_of_an_unknown_consultation_are_404(api, admin):
    assert_problem(api.get(f"/v1/consultations/{uuid.uuid4()}/notes", headers=admin), 404, "not-found")
    assert_problem(api.post(f"/v1/consultations/{uuid.uuid4()}/notes", json={"text": "n"}, headers=admin), 404)


def test_an_empty_note_is_422(api, admin, confirmed):
    response = api.post(f"/v1/consultations/{confirmed}/notes", json={"text": ""}, headers=admin)
    assert assert_problem(response, 422)["errors"][0]["field"] == "$.text"


def test_notes_need_a_token(api, confirmed):
    assert_problem(api.get(f"/v1/consultations/{confirmed}/notes"), 401)
    assert_problem(api.post(f"/v1/consultations/{confirmed}/notes", json={"text": "n"}), 401)


def test_a_second_slot_of_the_same_doctor_books_independently(api, admin, clinic, world, patient, confirmed):
    open_slot(api, admin, world.doctor_id, "2027-01-05T10:00:00Z")
    second = book(api, patient, world.patient_id, world.doctor_id, "2027-01-05T10:00:00Z").json()["consultation_id"]
    clinic.wait_until_settled()
    assert api.get(f"/v1/consultations/{second}", headers=patient).json()["status"] == "CONFIRMED"
