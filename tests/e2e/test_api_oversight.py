"""Sagas and audit trails: what auditors and admins see."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from tests.e2e.conftest import assert_problem, book

SAGA_STEPS = ["hold_slot", "validate_registrants", "book_slot", "confirm_consultation"]


@pytest.fixture
def auditor(token):
    return token("auditor-1", "AUDITOR")


@pytest.fixture
def accepted(api, clinic, token, world):
    """A settled, confirmed booking: {consultation_id, saga_id, status}, booked with correlation id book-42."""
    headers = token(world.patient_id, "PATIENT") | {"X-Correlation-Id": "book-42"}
    body = book(api, headers, world.patient_id, world.doctor_id).json()
    clinic.wait_until_settled()
    return body


def unique(names):
    return list(dict.fromkeys(names))


# Sagas -----------------------------------------------------------------------


def test_a_confirmed_bookings_saga_is_completed_with_every_step(api, auditor, accepted):
    response = api.get(f"/v1/sagas/{accepted['saga_id']}", headers=auditor)
    assert response.status_code == 200
    saga = response.json()
    assert (saga["saga_id"], saga["consultation_id"]) == (accepted["saga_id"], accepted["consultation_id"])
    assert saga["state"] == "COMPLETED"
    assert unique(step["name"] for step in saga["steps"]) == SAGA_STEPS
    assert all({"name", "status", "at"} <= set(step) for step in saga["steps"])
    assert (saga["kind"], saga["correlation_id"]) == ("booking", "book-42")  # whose, and which request started it
    assert saga["started_at"] == saga["steps"][0]["at"] and saga["patient_id"] and saga["doctor_id"]


def test_a_rejected_bookings_saga_is_rejected_with_its_reason(api, admin, clinic, token, world):
    # given the doctor is inactive; when the patient books
    api.post(f"/v1/doctors/{world.doctor_id}/deactivate", headers=admin)
    saga_id = book(api, token(world.patient_id, "PATIENT"), world.patient_id, world.doctor_id).json()["saga_id"]
    clinic.wait_until_settled()
    # then
    saga = api.get(f"/v1/sagas/{saga_id}", headers=admin).json()
    assert (saga["state"], saga["rejection_reason"]) == ("REJECTED", "doctor_inactive")
    assert saga["steps"][-1]["name"] == "reject_consultation"


@pytest.mark.parametrize("role", ["PATIENT", "DOCTOR"])
def test_sagas_are_forbidden_to_patients_and_doctors(api, token, world, accepted, role):
    sub = world.patient_id if role == "PATIENT" else world.doctor_id
    assert_problem(api.get(f"/v1/sagas/{accepted['saga_id']}", headers=token(sub, role)), 403, "insufficient-scope")


def test_sagas_need_a_token(api, accepted):
    assert_problem(api.get(f"/v1/sagas/{accepted['saga_id']}"), 401, "unauthenticated")


def test_an_unknown_saga_is_404(api, auditor):
    assert_problem(api.get(f"/v1/sagas/{uuid.uuid4()}", headers=auditor), 404, "not-found")


def test_the_list_of_sagas_is_newest_first_and_narrowed_by_each_filter(api, admin, clinic, token, world, accepted):
    api.post(f"/v1/doctors/{world.doctor_id}/deactivate", headers=admin)
    headers = token(world.patient_id, "PATIENT") | {"X-Correlation-Id": "book-43"}
    rejected = book(api, headers, world.patient_id, world.doctor_id).json()["saga_id"]
    clinic.wait_until_settled()

    def listed(**query):
        response = api.get("/v1/sagas", params=query, headers=admin)
        assert response.status_code == 200, response.text
        return [saga["saga_id"] for saga in response.json()["items"]]

    assert listed() == [rejected, accepted["saga_id"]]
    assert listed(state="confirmed") == [accepted["saga_id"]] and listed(state="rejected") == [rejected]
    assert listed(state="open") == [] and listed(state="stuck") == []
    assert listed(correlation_id="book-42") == [accepted["saga_id"]]
    assert listed(patient_id=world.patient_id, doctor_id=world.doctor_id) == [rejected, accepted["saga_id"]]
    assert listed(patient_id=str(uuid.uuid4())) == []
    today = datetime.now(UTC).date()
    assert len(listed(since=str(today), until=str(today))) == 2 and listed(since="2999-01-01") == []
    first = api.get("/v1/sagas", params={"limit": 1}, headers=admin).json()
    assert [s["saga_id"] for s in first["items"]] == [rejected]
    rest = api.get("/v1/sagas", params={"limit": 1, "cursor": first["next_cursor"]}, headers=admin).json()
    assert [s["saga_id"] for s in rest["items"]] == [accepted["saga_id"]]


def test_a_listed_saga_says_whose_it_is_and_how_it_stands(api, auditor, world, accepted):
    [saga] = api.get("/v1/sagas", headers=auditor).json()["items"]
    assert saga | {"started_at": None, "deadline": None, "waiting_since": None, "trace_id": None} == {
        "saga_id": accepted["saga_id"], "kind": "booking", "consultation_id": accepted["consultation_id"],
        "patient_id": world.patient_id, "doctor_id": world.doctor_id, "started_at": None, "state": "COMPLETED",
        "rejection_reason": None, "deadline": None, "waiting_since": None, "stuck": False,
        "correlation_id": "book-42", "trace_id": None}


@pytest.mark.parametrize("query", [{"state": "lost"}, {"patient_id": "not-a-uuid"}, {"since": "yesterday"},
                                   {"limit": "0"}, {"correlation_id": "x" * 129}])
def test_a_bad_saga_filter_is_a_400_problem(api, auditor, query):
    response = api.get("/v1/sagas", params=query, headers=auditor)
    assert response.status_code == 400 and response.headers["content-type"].startswith("application/problem+json")


# Audit -----------------------------------------------------------------------


def test_audit_at_version_1_shows_the_request_and_latest_shows_the_confirmation(api, auditor, accepted):
    path = f"/v1/audit/consultation/{accepted['consultation_id']}"
    # when an auditor reads version 1
    first = api.get(path, params={"version": 1}, headers=auditor).json()
    # then only the request is replayed
    assert first["version"] == 1
    assert first["state"]["status"] == "REQUESTED"
    assert [e["type"] for e in first["events"]] == ["Consultation.Requested"]
    # and the latest has the confirmation as well
    latest = api.get(path, headers=auditor).json()
    assert latest["version"] == 2
    assert latest["state"]["status"] == "CONFIRMED"
    assert [(e["type"], e["version"]) for e in latest["events"]] == [("Consultation.Requested", 1),
                                                                     ("Consultation.Confirmed", 2)]


def test_audited_events_carry_every_metadata_field(api, auditor, accepted):
    trail = api.get(f"/v1/audit/consultation/{accepted['consultation_id']}", headers=auditor).json()
    keys = {"type", "version", "timestamp", "correlation_id", "causation_id", "saga_id", "actor", "data"}
    assert all(set(event) == keys for event in trail["events"])
    assert trail["events"][0]["data"]["reason"] == "check-up"


def test_events_caused_by_a_request_carry_its_correlation_id(api, auditor, world, accepted):
    trail = api.get(f"/v1/audit/consultation/{accepted['consultation_id']}", headers=auditor).json()
    requested, confirmed = trail["events"]
    assert requested["correlation_id"] == "book-42"
    assert world.patient_id in requested["actor"]
    # the saga's reaction keeps the correlation id and names the saga
    assert confirmed["correlation_id"] == "book-42"
    assert confirmed["saga_id"] == accepted["saga_id"]


def test_the_sagas_events_carry_the_bookings_correlation_id(api, auditor, accepted):
    trail = api.get(f"/v1/audit/saga/{accepted['saga_id']}", headers=auditor).json()
    assert trail["state"]["state"] == "COMPLETED"
    assert {e["correlation_id"] for e in trail["events"]} == {"book-42"}


def test_audit_as_of_now_is_the_latest_version(api, auditor, accepted):
    now = datetime.now(UTC).isoformat()
    trail = api.get(f"/v1/audit/consultation/{accepted['consultation_id']}", params={"as_of": now},
                    headers=auditor)
    assert trail.status_code == 200
    assert trail.json()["version"] == 2


def test_audit_as_of_before_the_aggregate_existed_is_404(api, auditor, accepted):
    path = f"/v1/audit/consultation/{accepted['consultation_id']}?as_of={quote('2000-01-01T00:00:00+00:00')}"
    assert_problem(api.get(path, headers=auditor), 404, "not-found")


def test_audit_with_both_version_and_as_of_is_400(api, auditor, accepted):
    params = {"version": 1, "as_of": datetime.now(UTC).isoformat()}
    response = api.get(f"/v1/audit/consultation/{accepted['consultation_id']}", params=params, headers=auditor)
    assert_problem(response, 400, "invalid-query")


def test_audit_of_a_version_beyond_the_latest_is_404(api, auditor, accepted):
    response = api.get(f"/v1/audit/consultation/{accepted['consultation_id']}", params={"version": 99},
                       headers=auditor)
    assert_problem(response, 404, "not-found")


def test_audit_of_version_0_is_a_4xx_problem(api, auditor, accepted):
    response = api.get(f"/v1/audit/consultation/{accepted['consultation_id']}", params={"version": 0},
                       headers=auditor)
    assert_problem(response, 400)


def test_audit_of_an_unknown_kind_is_a_4xx_problem(api, auditor, accepted):
    response = api.get(f"/v1/audit/invoice/{accepted['consultation_id']}", headers=auditor)
    assert response.status_code in (400, 404)
    assert_problem(response, response.status_code)


def test_audit_of_an_unknown_id_is_404(api, auditor):
    assert_problem(api.get(f"/v1/audit/consultation/{uuid.uuid4()}", headers=auditor), 404, "not-found")


def test_audit_of_an_id_of_another_kind_is_404(api, auditor, world):
    # a doctor's id is not a consultation
    assert_problem(api.get(f"/v1/audit/consultation/{world.doctor_id}", headers=auditor), 404)


@pytest.mark.parametrize("kind", ["patient", "doctor", "slot", "consultation", "saga"])
def test_every_kind_can_be_audited(api, admin, world, accepted, kind):
    ids = {"patient": world.patient_id, "doctor": world.doctor_id, "slot": world.slot_id,
           "consultation": accepted["consultation_id"], "saga": accepted["saga_id"]}
    response = api.get(f"/v1/audit/{kind}/{ids[kind]}", headers=admin)
    assert response.status_code == 200
    trail = response.json()
    assert (trail["kind"], trail["id"], trail["state"]["id"]) == (kind, ids[kind], ids[kind])
    assert [e["version"] for e in trail["events"]] == list(range(1, trail["version"] + 1))


@pytest.mark.parametrize("role", ["PATIENT", "DOCTOR"])
def test_audit_is_forbidden_to_patients_and_doctors(api, token, world, accepted, role):
    sub = world.patient_id if role == "PATIENT" else world.doctor_id
    response = api.get(f"/v1/audit/consultation/{accepted['consultation_id']}", headers=token(sub, role))
    assert_problem(response, 403, "insufficient-scope")


def test_audit_needs_a_token(api, accepted):
    assert_problem(api.get(f"/v1/audit/consultation/{accepted['consultation_id']}"), 401, "unauthenticated")
