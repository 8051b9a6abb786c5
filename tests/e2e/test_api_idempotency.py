"""``Idempotency-Key`` on every state-changing POST, over HTTP: a retry is answered with the first
outcome and acts once; the same key with another request is a 422; keys are each caller's own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from interfaces.http.openapi import framework_problems
from interfaces.http.spec import openapi_document
from process_managers.ports import RegistryUnavailableError
from tests.e2e.conftest import START, assert_problem, book, open_slot, register_doctor, register_patient
from tests.kit import FakeRegistry

KEY = {"Idempotency-Key": '"8e03978e-40d5-43e8-bc93-6894a57f9324"'}
BOOKING = {"start": START, "reason": "check-up"}
LATER = "2027-01-05T10:00:00Z"
AVAILABILITY = {"weekdays": ["MON"], "opens": "09:00", "closes": "10:00", "slot_minutes": 30,
                "first_day": "2027-03-01", "weeks": 1, "time_zone": "Europe/Lisbon"}


@pytest.fixture
def patient(token, world):
    return token(world.patient_id, "PATIENT")


def booking(world: Any, **changes: str) -> dict[str, str]:
    return {"patient_id": world.patient_id, "doctor_id": world.doctor_id, **BOOKING, **changes}


def consultations_of(api: Any, headers: dict[str, str], patient_id: str) -> list[str]:
    listed = api.get(f"/v1/patients/{patient_id}/consultations", headers=headers).json()["items"]
    return [c["consultation_id"] for c in listed]


def test_a_retried_booking_is_answered_with_the_first_consultation_and_books_once(api, clinic, world, patient):
    first = api.post("/v1/consultations", json=booking(world), headers=patient | KEY)
    clinic.wait_until_settled()
    # when the client retries (its first answer was lost)
    again = api.post("/v1/consultations", json=booking(world), headers=patient | KEY)
    clinic.wait_until_settled()
    # then it gets the first outcome again, and there is one consultation, confirmed (not a second, rejected)
    assert (again.status_code, again.json()) == (202, first.json())
    assert again.headers["location"] == first.headers["location"]
    consultation_id = first.json()["consultation_id"]
    assert consultations_of(api, patient, world.patient_id) == [consultation_id]
    assert api.get(f"/v1/consultations/{consultation_id}", headers=patient).json()["status"] == "CONFIRMED"


def test_the_same_body_written_differently_is_the_same_request(api, clinic, world, patient):
    first = api.post("/v1/consultations", json=booking(world), headers=patient | KEY)
    reordered = json.dumps(dict(reversed(list(booking(world).items()))), indent=2).encode()
    again = api.post("/v1/consultations", content=reordered,
                     headers=patient | KEY | {"content-type": "application/json"})
    assert again.json()["consultation_id"] == first.json()["consultation_id"]


def test_the_same_key_with_another_body_is_422_and_changes_nothing(api, clinic, world, patient):
    first = api.post("/v1/consultations", json=booking(world), headers=patient | KEY)
    other = api.post("/v1/consultations", json=booking(world, reason="another reason"), headers=patient | KEY)
    problem = assert_problem(other, 422, "idempotency-key-reused")
    assert "different request" in problem["detail"]
    clinic.wait_until_settled()
    assert consultations_of(api, patient, world.patient_id) == [first.json()["consultation_id"]]


def test_without_a_key_a_retry_books_again(api, clinic, world, patient):
    book(api, patient, world.patient_id, world.doctor_id)
    book(api, patient, world.patient_id, world.doctor_id)
    clinic.wait_until_settled()
    assert len(consultations_of(api, patient, world.patient_id)) == 2


def test_keys_are_each_callers_own(api, clinic, admin, world, patient):
    mine = api.post("/v1/consultations", json=booking(world), headers=patient | KEY)
    theirs = api.post("/v1/consultations", json=booking(world), headers=admin | KEY)
    assert theirs.status_code == 202
    assert theirs.json()["consultation_id"] != mine.json()["consultation_id"]


def test_a_retried_cancellation_answers_200_again_instead_of_409(api, clinic, world, patient):
    consultation_id = book(api, patient, world.patient_id, world.doctor_id).json()["consultation_id"]
    clinic.wait_until_settled()
    cancel = f"/v1/consultations/{consultation_id}/cancel"
    first = api.post(cancel, json={"reason": "ill"}, headers=patient | KEY)
    again = api.post(cancel, json={"reason": "ill"}, headers=patient | KEY)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    unkeyed = api.post(cancel, json={"reason": "ill"}, headers=patient)
    assert_problem(unkeyed, 409, "invalid-state")
    events = clinic.auditor.trail("consultation", uuid.UUID(consultation_id)).events
    assert [e.type for e in events].count("Consultation.CancelledByPatient") == 1


def test_a_command_that_failed_records_no_receipt_so_its_retry_runs_again(api, clinic, world, patient):
    consultation_id = book(api, patient, world.patient_id, world.doctor_id).json()["consultation_id"]
    # the saga has not confirmed it yet in this test's view: a stale If-Match fails, and keeps nothing
    cancel = f"/v1/consultations/{consultation_id}/cancel"
    stale = api.post(cancel, json={"reason": "ill"}, headers=patient | KEY | {"If-Match": '"99"'})
    assert_problem(stale, 409, "version-conflict")
    retried = api.post(cancel, json={"reason": "ill"}, headers=patient | KEY | {"If-Match": "*"})
    assert retried.status_code == 200


# Every keyed operation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keyed:
    """A keyed operation's first request and another one under the same key (``path``, ``body``)."""

    path: Callable[[Any], str]
    body: Callable[[Any], Any]
    other_path: Callable[[Any], str]
    other_body: Callable[[Any], Any]
    status: int


def _consultation(w: Any) -> str:
    return w.confirmed


WEBHOOK = {"url": "https://hooks.example.org/clinic", "events": ["consultation.confirmed"]}
KEYED: dict[str, Keyed] = {
    "bookConsultation": Keyed(lambda w: "/v1/consultations", lambda w: booking(w),
                              lambda w: "/v1/consultations", lambda w: booking(w, reason="other"), 202),
    "cancelConsultation": Keyed(lambda w: f"/v1/consultations/{w.confirmed}/cancel", lambda w: {"reason": "ill"},
                                lambda w: f"/v1/consultations/{w.confirmed}/cancel", lambda w: {"reason": "busy"}, 200),
    "rescheduleConsultation": Keyed(lambda w: f"/v1/consultations/{w.confirmed}/reschedule",
                                    lambda w: {"start": LATER}, lambda w: f"/v1/consultations/{w.confirmed}/reschedule",
                                    lambda w: {"start": "2027-01-05T11:00:00Z"}, 202),
    "closeSlot": Keyed(lambda w: f"/v1/doctors/{w.doctor_id}/slots/{w.open_slot}/close", lambda w: None,
                       lambda w: f"/v1/doctors/{w.doctor_id}/slots/{w.booked_slot}/close", lambda w: None, 200),
    "reopenSlot": Keyed(lambda w: f"/v1/doctors/{w.doctor_id}/slots/{w.open_slot}/reopen", lambda w: None,
                        lambda w: f"/v1/doctors/{w.doctor_id}/slots/{w.booked_slot}/reopen", lambda w: None, 200),
    "openAvailability": Keyed(lambda w: f"/v1/doctors/{w.doctor_id}/availability", lambda w: AVAILABILITY,
                              lambda w: f"/v1/doctors/{w.doctor_id}/availability",
                              lambda w: AVAILABILITY | {"weeks": 2}, 201),
    "completeConsultation": Keyed(lambda w: f"/v1/consultations/{w.confirmed}/complete", lambda w: None,
                                  lambda w: f"/v1/consultations/{w.other_confirmed}/complete", lambda w: None, 200),
    "markConsultationNoShow": Keyed(lambda w: f"/v1/consultations/{w.confirmed}/no-show", lambda w: None,
                                    lambda w: f"/v1/consultations/{w.other_confirmed}/no-show", lambda w: None, 200),
    "addClinicalNote": Keyed(lambda w: f"/v1/consultations/{w.confirmed}/notes", lambda w: {"text": "BP 120/80"},
                             lambda w: f"/v1/consultations/{w.confirmed}/notes", lambda w: {"text": "BP 90/60"}, 201),
    "registerPatient": Keyed(lambda w: "/v1/patients", lambda w: {"name": "Rita", "email": "rita@example.org",
                                                                  "birth_date": "1990-02-02", "consent": True},
                             lambda w: "/v1/patients", lambda w: {"name": "Rui", "email": "rui@example.org",
                                                                  "birth_date": "1990-02-02", "consent": True}, 201),
    "registerDoctor": Keyed(lambda w: "/v1/doctors", lambda w: {"name": "Dr Vera", "specialty": "gp"},
                            lambda w: "/v1/doctors", lambda w: {"name": "Dr Eva", "specialty": "gp"}, 201),
    "deactivateDoctor": Keyed(lambda w: f"/v1/doctors/{w.doctor_id}/deactivate", lambda w: None,
                              lambda w: f"/v1/doctors/{w.other_doctor}/deactivate", lambda w: None, 200),
    "retrySagaValidation": Keyed(lambda w: f"/v1/sagas/{w.stuck_saga}/retry-validation", lambda w: None,
                                 lambda w: f"/v1/sagas/{w.other_stuck_saga}/retry-validation", lambda w: None, 200),
    "compensateSaga": Keyed(lambda w: f"/v1/sagas/{w.stuck_saga}/compensate", lambda w: None,
                            lambda w: f"/v1/sagas/{w.other_stuck_saga}/compensate", lambda w: None, 200),
    # kept by the projection worker's process: a repeat is the rebuild the key started, however far it went
    "rebuildReadModel": Keyed(lambda w: "/v1/read-models/doctor_directory/rebuild", lambda w: None,
                              lambda w: "/v1/read-models/doctor_slots/rebuild", lambda w: None, 202),
    "createWebhook": Keyed(lambda w: "/v1/webhooks", lambda w: WEBHOOK, lambda w: "/v1/webhooks",
                           lambda w: WEBHOOK | {"url": "https://hooks.example.org/other"}, 201),
    "openSlots": Keyed(lambda w: f"/v1/doctors/{w.doctor_id}/slots",
                       lambda w: {"slots": [{"start": "2027-03-01T09:00:00Z", "duration_minutes": 30}]},
                       lambda w: f"/v1/doctors/{w.doctor_id}/slots",
                       lambda w: {"slots": [{"start": "2027-03-01T10:00:00Z", "duration_minutes": 30}]}, 201),
}


@dataclass(frozen=True)
class KeyedWorld:
    patient_id: str
    doctor_id: str
    other_doctor: str
    confirmed: str
    other_confirmed: str
    open_slot: str
    booked_slot: str
    stuck_saga: str
    other_stuck_saga: str


@pytest.fixture
def keyed_world(api, clinic, admin) -> KeyedWorld:
    doctor, patient = register_doctor(api, admin), register_patient(api, admin)
    booked_slot = open_slot(api, admin, doctor)
    later_slot = open_slot(api, admin, doctor, LATER)
    open_slot(api, admin, doctor, "2027-01-06T09:00:00Z")
    confirmed = book(api, admin, patient, doctor).json()["consultation_id"]
    other = book(api, admin, patient, doctor, "2027-01-06T09:00:00Z").json()["consultation_id"]
    clinic.wait_until_settled()
    clinic.booking.registry = FakeRegistry(RegistryUnavailableError("registry down"))  # two sagas wait on it
    stuck = []
    for day in ("2027-01-07", "2027-01-08"):
        open_slot(api, admin, doctor, f"{day}T09:00:00Z")
        stuck.append(book(api, admin, patient, doctor, f"{day}T09:00:00Z").json()["saga_id"])
    clinic.wait_until_settled()
    return KeyedWorld(patient, doctor, register_doctor(api, admin, "Dr Eva"), confirmed, other, later_slot, booked_slot,
                      *stuck)


def keyed_operations() -> list[str]:
    return sorted(operation["operationId"] for path in openapi_document()["paths"].values()
                  for operation in path.values() if "idempotency-key-reused" in framework_problems(operation))


def test_every_state_changing_post_takes_a_key_and_each_has_a_case_here():
    posts = sorted(operation["operationId"] for path in openapi_document()["paths"].values()
                   for method, operation in path.items() if method == "post")
    assert keyed_operations() == posts
    assert sorted(KEYED) == posts


@pytest.mark.parametrize("name", sorted(KEYED))
def test_a_repeat_answers_the_first_outcome_and_another_request_is_422(api, admin, keyed_world, name):
    case = KEYED[name]
    first = api.post(case.path(keyed_world), json=case.body(keyed_world), headers=admin | KEY)
    assert first.status_code == case.status, first.text
    again = api.post(case.path(keyed_world), json=case.body(keyed_world), headers=admin | KEY)
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    other = api.post(case.other_path(keyed_world), json=case.other_body(keyed_world), headers=admin | KEY)
    assert_problem(other, 422, "idempotency-key-reused")


@pytest.mark.parametrize("key", ["", 'a "quoted" key', "x" * 256, "tab\tinside"])
def test_a_malformed_key_is_400_naming_the_header(api, world, patient, key):
    response = api.post("/v1/consultations", json=booking(world), headers=patient | {"Idempotency-Key": key})
    problem = assert_problem(response, 400, "invalid-parameter")
    assert "Idempotency-Key" in json.dumps(problem)
