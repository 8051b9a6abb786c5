"""Moving a confirmed consultation to another start over HTTP: the reschedule saga, as clients see it."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import START, assert_problem, book, open_slot
from tests.kit import FakeRegistry, eventually

LATER = "2027-01-05T10:00:00Z"


@pytest.fixture
def patient(token, world):
    return token(world.patient_id, "PATIENT")


@pytest.fixture
def confirmed(api, admin, clinic, world, patient):
    """The world's patient's CONFIRMED consultation at START; the doctor also has a slot open at LATER."""
    open_slot(api, admin, world.doctor_id, LATER)
    consultation_id = book(api, patient, world.patient_id, world.doctor_id).json()["consultation_id"]
    clinic.wait_until_settled()
    return consultation_id


def available(api, headers, world) -> list[str]:
    listed = api.get(f"/v1/doctors/{world.doctor_id}/slots?date={START[:10]}&status=available", headers=headers)
    return [slot["start"] for slot in listed.json()["slots"]]


def test_a_patient_moves_their_consultation_to_another_open_slot(api, admin, clinic, world, patient, confirmed):
    response = api.post(f"/v1/consultations/{confirmed}/reschedule", json={"start": LATER}, headers=patient)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert (accepted["consultation_id"], accepted["status"]) == (confirmed, "pending")
    assert response.headers["location"] == f"/v2/consultations/{confirmed}"
    clinic.wait_until_settled()
    # then it starts later, the old slot is free again and the new one is taken
    moved = api.get(f"/v2/consultations/{confirmed}", headers=patient).json()
    assert (moved["start"], moved["status"]["code"]) == (LATER, "CONFIRMED")
    assert "reschedule" not in moved
    assert api.get(f"/v1/consultations/{confirmed}", headers=patient).json()["start"] == LATER
    assert available(api, patient, world) == [START]
    # and operators follow the reschedule like a booking
    saga = api.get(f"/v1/sagas/{accepted['saga_id']}", headers=admin).json()
    assert saga["state"] == "COMPLETED"
    assert [s["name"] for s in saga["steps"] if s["status"] == "succeeded"] == [
        "hold_slot", "validate_registrants", "book_slot", "move_consultation"]
    trail = api.get(f"/v1/audit/reschedule/{accepted['saga_id']}", headers=admin).json()
    assert trail["events"][-1]["type"] == "RescheduleSaga.Completed"


@pytest.mark.parametrize("target", ["2027-01-05T11:00:00Z", START], ids=["no slot open there", "its own start"])
def test_a_reschedule_that_cannot_happen_keeps_the_consultation_as_it_was(api, clinic, world, patient, confirmed,
                                                                          target):
    response = api.post(f"/v1/consultations/{confirmed}/reschedule", json={"start": target}, headers=patient)
    clinic.wait_until_settled()
    kept = api.get(f"/v2/consultations/{confirmed}", headers=patient).json()
    assert (kept["start"], kept["status"]["code"]) == (START, "CONFIRMED")
    assert available(api, patient, world) == [LATER]
    if target == START:
        assert_problem(response, 409, "invalid-state")
    else:
        assert response.status_code == 202
        assert kept["reschedule"] == {"status": "failed", "reason": "slot_unavailable"}


def test_a_slot_taken_by_another_booking_is_refused_and_the_original_kept(api, admin, clinic, token, world, patient,
                                                                          confirmed):
    other = api.post("/v1/patients", headers=admin, json={
        "name": "Bia", "email": "bia@example.org", "birth_date": "1991-01-01", "consent": True}).json()["patient_id"]
    book(api, admin, other, world.doctor_id, LATER)
    clinic.wait_until_settled()
    api.post(f"/v1/consultations/{confirmed}/reschedule", json={"start": LATER}, headers=patient)
    clinic.wait_until_settled()
    kept = api.get(f"/v2/consultations/{confirmed}", headers=patient).json()
    assert (kept["start"], kept["reschedule"]) == (START, {"status": "failed", "reason": "slot_unavailable"})


def test_while_a_reschedule_waits_it_shows_pending_and_a_second_one_is_409(api, clinic, world, patient, confirmed):
    clinic.booking.registry = FakeRegistry(inner=clinic.booking.registry, gated=True)
    api.post(f"/v1/consultations/{confirmed}/reschedule", json={"start": LATER}, headers=patient)
    eventually(lambda: LATER not in available(api, patient, world), what="the new slot held")
    pending = api.get(f"/v2/consultations/{confirmed}", headers=patient).json()
    assert (pending["start"], pending["reschedule"]) == (START, {"status": "pending", "start": LATER})
    second = api.post(f"/v1/consultations/{confirmed}/reschedule", json={"start": "2027-01-05T11:00:00Z"},
                      headers=patient)
    assert "already under way" in assert_problem(second, 409, "invalid-state")["detail"]
    clinic.booking.registry.open()
    clinic.wait_until_settled()
    assert api.get(f"/v2/consultations/{confirmed}", headers=patient).json()["start"] == LATER


def test_cancelling_after_a_move_frees_the_new_slot(api, clinic, world, patient, confirmed):
    api.post(f"/v1/consultations/{confirmed}/reschedule", json={"start": LATER}, headers=patient)
    clinic.wait_until_settled()
    cancelled = api.post(f"/v1/consultations/{confirmed}/cancel", json={"reason": "ill"}, headers=patient)
    assert cancelled.status_code == 200
    clinic.wait_until_settled()
    assert available(api, patient, world) == [START, LATER]


def test_only_a_confirmed_consultation_can_be_moved(api, admin, clinic, world, patient):
    rejected = book(api, patient, world.patient_id, world.doctor_id, "2027-02-01T09:00:00Z").json()["consultation_id"]
    clinic.wait_until_settled()
    response = api.post(f"/v1/consultations/{rejected}/reschedule", json={"start": LATER}, headers=patient)
    assert_problem(response, 409, "invalid-state")


@pytest.mark.parametrize("who", ["its doctor", "another patient"])
def test_only_its_patient_or_an_admin_may_move_it(api, token, world, confirmed, who):
    headers = token(world.doctor_id, "DOCTOR") if who == "its doctor" else token(str(uuid.uuid4()), "PATIENT")
    response = api.post(f"/v1/consultations/{confirmed}/reschedule", json={"start": LATER}, headers=headers)
    assert_problem(response, 403)


def test_a_stale_if_match_is_409_and_moves_nothing(api, clinic, patient, confirmed):
    response = api.post(f"/v1/consultations/{confirmed}/reschedule", json={"start": LATER},
                        headers=patient | {"If-Match": '"1"'})
    assert_problem(response, 409, "version-conflict")
    clinic.wait_until_settled()
    assert api.get(f"/v2/consultations/{confirmed}", headers=patient).json()["start"] == START
