"""Outcomes pushed to clients: webhook subscriptions over HTTP, deliveries to a real HTTP endpoint, signed
as Standard Webhooks says and verified with that specification's own library, retried until taken, and
the delivery log a client reads."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from litestar.testing import TestClient

from application.bootstrap import bootstrap
from application.clinic import Clinic
from application.settings import Settings
from domain.webhooks import EVENT_TYPES, MAX_SUBSCRIPTIONS_PER_OWNER
from interfaces.http.app import create_app
from interfaces.http.schemas import WebhookEventType
from tests.e2e.conftest import START, assert_problem, book, open_slot, register_doctor, register_patient
from tests.kit.eventually import eventually
from tests.kit.webhooks import WebhookReceiver, webhook_receiver

LATER = START.replace("09:00", "11:00")


@pytest.fixture
def clinic() -> Iterator[Clinic]:
    clinic = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05, webhook_allow_http=True,
                                webhook_allow_private_networks=True, webhook_retry_seconds=0.2))
    yield clinic
    clinic.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
def patient(token, world):
    return token(world.patient_id, "PATIENT")


def subscribe(api, headers, url, events=("consultation.confirmed", "consultation.rejected"), **extra) -> Any:
    response = api.post("/v1/webhooks", json={"url": url, "events": list(events)}, headers=headers | extra)
    assert response.status_code == 201, response.text
    return response.json()


def deliveries(api, headers, webhook_id, query="") -> list[dict[str, Any]]:
    response = api.get(f"/v1/webhooks/{webhook_id}/deliveries{query}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_a_patient_is_told_their_booking_was_confirmed_signed_and_once(api, clinic, world, patient, receiver):
    webhook = subscribe(api, patient, receiver.url)
    assert webhook["secret"].startswith("whsec_") and webhook["audience"] == "own"
    consultation_id = book(api, patient, world.patient_id, world.doctor_id).json()["consultation_id"]
    sent = receiver.next()
    payload = sent.verified(webhook["secret"])
    assert payload["type"] == "consultation.confirmed"
    assert payload["data"] == {"consultation_id": consultation_id, "version": 2,
                               "links": {"consultation": f"/v2/consultations/{consultation_id}"}}
    assert sent.path == "/hooks/clinic" and sent.headers["content-type"] == "application/json"
    clinic.wait_until_settled()
    [logged] = eventually(lambda: [d for d in deliveries(api, patient, webhook["webhook_id"])
                                   if d["status"] == "delivered"], what="the delivery logged as delivered")
    assert logged | {"created_at": None, "last_attempt_at": None} == {
        "delivery_id": sent.headers["webhook-id"], "event_type": "consultation.confirmed",
        "consultation_id": consultation_id, "created_at": None, "status": "delivered", "attempts": 1,
        "last_attempt_at": None, "last_status_code": 200, "last_error": None, "next_attempt_at": None}
    assert receiver.received.empty()


def test_a_signature_made_with_another_secret_or_a_changed_body_is_refused(api, world, patient, receiver):
    webhook = subscribe(api, patient, receiver.url)
    book(api, patient, world.patient_id, world.doctor_id)
    sent = receiver.next()
    other = subscribe(api, patient, receiver.url + "/other")["secret"]
    with pytest.raises(Exception, match="signature"):
        sent.verified(other)
    tampered = type(sent)(sent.path, sent.headers, sent.body.replace(b"confirmed", b"rejected"))
    with pytest.raises(Exception, match="signature"):
        tampered.verified(webhook["secret"])


def test_a_failing_endpoint_gets_the_same_delivery_again_until_it_takes_it(api, clinic, world, patient, receiver):
    receiver.answers = [503, 500]
    webhook = subscribe(api, patient, receiver.url)
    book(api, patient, world.patient_id, world.doctor_id)
    attempts = [receiver.next() for _ in range(3)]
    assert len({sent.headers["webhook-id"] for sent in attempts}) == 1  # one delivery, tried three times
    assert all(sent.verified(webhook["secret"])["type"] == "consultation.confirmed" for sent in attempts)
    [logged] = eventually(lambda: [d for d in deliveries(api, patient, webhook["webhook_id"])
                                   if d["status"] == "delivered"], what="the third attempt logged")
    assert logged["attempts"] == 3 and logged["last_status_code"] == 200


def test_the_log_shows_a_pending_delivery_its_error_and_when_it_is_tried_next(issuer, token, receiver):
    with served(issuer, webhook_allow_http=True, webhook_allow_private_networks=True,
                webhook_retry_seconds=3600) as api:
        admin = token("ops-1", "ADMIN")
        doctor_id = register_doctor(api, admin)
        patient_id = register_patient(api, admin)
        open_slot(api, admin, doctor_id)
        patient = token(patient_id, "PATIENT")
        receiver.answers = [500]
        webhook = subscribe(api, patient, receiver.url)
        book(api, patient, patient_id, doctor_id)
        receiver.next()
        [logged] = eventually(lambda: [d for d in deliveries(api, patient, webhook["webhook_id"])
                                       if d["attempts"] == 1], what="the failed attempt logged")
        assert logged["status"] == "pending" and logged["last_status_code"] == 500
        assert logged["last_error"] == "the client answered 500" and logged["next_attempt_at"] is not None
        assert deliveries(api, patient, webhook["webhook_id"], "?status=delivered") == []


@contextmanager
def served(issuer, **settings) -> Iterator[TestClient[Any]]:
    """The API over a clinic of its own, with these ``settings``."""
    clinic = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05, **settings))
    try:
        with TestClient(create_app(clinic, issuer.verifier())) as api:
            yield api
    finally:
        clinic.close()


def test_each_subscriber_hears_only_of_consultations_it_may_see(api, clinic, admin, token, world, patient, receiver):
    other_patient = token(uuid.uuid4(), "PATIENT")
    doctor = token(world.doctor_id, "DOCTOR")
    mine = subscribe(api, patient, receiver.url + "/patient")
    theirs = subscribe(api, other_patient, receiver.url + "/other-patient")
    doctors = subscribe(api, doctor, receiver.url + "/doctor")
    clinics = subscribe(api, admin, receiver.url + "/clinic", events=["consultation.confirmed"])
    assert clinics["audience"] == "all"
    book(api, patient, world.patient_id, world.doctor_id)
    paths = sorted(receiver.next().path for _ in range(3))
    assert paths == ["/hooks/clinic/clinic", "/hooks/clinic/doctor", "/hooks/clinic/patient"]
    clinic.wait_until_settled()
    assert deliveries(api, other_patient, theirs["webhook_id"]) == []
    assert [len(deliveries(api, h, w["webhook_id"])) for h, w in ((patient, mine), (doctor, doctors))] == [1, 1]


def test_only_the_outcomes_asked_for_are_sent(api, clinic, world, patient, receiver):
    subscribe(api, patient, receiver.url, events=["consultation.cancelled"])
    consultation_id = book(api, patient, world.patient_id, world.doctor_id).json()["consultation_id"]
    clinic.wait_until_settled()
    response = api.post(f"/v1/consultations/{consultation_id}/cancel", json={"reason": "travelling"}, headers=patient)
    assert response.status_code == 200, response.text
    payload = receiver.next().body.decode()
    assert '"type":"consultation.cancelled"' in payload and '"cancelled_by":"patient"' in payload
    assert "travelling" not in payload  # the reason is personal data: it stays in the consultation
    clinic.wait_until_settled()
    assert receiver.received.empty()


def test_a_rescheduled_consultation_says_where_it_moved(api, admin, clinic, world, patient, receiver):
    open_slot(api, admin, world.doctor_id, LATER)
    webhook = subscribe(api, patient, receiver.url, events=["consultation.rescheduled"])
    consultation_id = book(api, patient, world.patient_id, world.doctor_id).json()["consultation_id"]
    clinic.wait_until_settled()
    moved = api.post(f"/v1/consultations/{consultation_id}/reschedule", json={"start": LATER}, headers=patient)
    assert moved.status_code == 202, moved.text
    data = receiver.next().verified(webhook["secret"])["data"]
    assert (data["from_start"], data["start"]) == (START.replace("Z", "+00:00"), LATER.replace("Z", "+00:00"))


def test_a_deleted_subscription_stops_and_its_pending_deliveries_are_given_up(api, clinic, world, patient, receiver):
    receiver.answers = [500] * 100
    webhook = subscribe(api, patient, receiver.url)
    book(api, patient, world.patient_id, world.doctor_id)
    receiver.next()
    assert api.delete(f"/v1/webhooks/{webhook['webhook_id']}", headers=patient).status_code == 204
    assert api.delete(f"/v1/webhooks/{webhook['webhook_id']}", headers=patient).status_code == 204  # again: no change
    assert_problem(api.get(f"/v1/webhooks/{webhook['webhook_id']}", headers=patient), 404, "not-found")
    assert api.get("/v1/webhooks", headers=patient).json() == {"items": []}
    [given_up] = eventually(lambda: _log_of(clinic, webhook["webhook_id"], "failed"), what="the delivery given up")
    assert given_up.last_error == "subscription_deleted"


def _log_of(clinic, webhook_id, status):
    clinic.wait_until_settled()
    return clinic.read_models.webhook_deliveries(uuid.UUID(webhook_id), status).items


def test_subscriptions_are_private_to_their_owner_and_the_clinics_admins(api, admin, token, patient, receiver):
    webhook = subscribe(api, patient, receiver.url)
    stranger = token(uuid.uuid4(), "PATIENT")
    for response in (api.get(f"/v1/webhooks/{webhook['webhook_id']}", headers=stranger),
                     api.get(f"/v1/webhooks/{webhook['webhook_id']}/deliveries", headers=stranger),
                     api.delete(f"/v1/webhooks/{webhook['webhook_id']}", headers=stranger)):
        assert_problem(response, 403, "forbidden")
    assert api.get(f"/v1/webhooks/{webhook['webhook_id']}", headers=admin).json()["url"] == receiver.url
    assert_problem(api.get(f"/v1/webhooks/{uuid.uuid4()}", headers=admin), 404, "not-found")
    listed = api.get("/v1/webhooks", headers=patient).json()["items"]
    assert [w["webhook_id"] for w in listed] == [webhook["webhook_id"]] and "secret" not in listed[0]
    assert api.get("/v1/webhooks", headers=stranger).json() == {"items": []}


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://hooks.example.org/x", "scheme"),
    ("https://user:pw@hooks.example.org/x", "credentials"),
    ("https:///no-host", "host"),
    ("https://hooks.example.org/x#part", "fragment"),
    ("https://hooks.example.org:99999/x", "port"),
])
def test_a_url_the_rules_refuse_is_a_422_naming_why(api, patient, url, why):
    response = api.post("/v1/webhooks", json={"url": url, "events": ["consultation.confirmed"]}, headers=patient)
    assert why in assert_problem(response, 422, "invalid-webhook")["detail"].lower()


def test_plain_http_is_refused_unless_the_deployment_allows_it(issuer, token):
    with served(issuer) as api:
        response = api.post("/v1/webhooks", json={"url": "http://hooks.example.org/x", "events": [
            "consultation.confirmed"]}, headers=token(uuid.uuid4(), "PATIENT"))
        assert "https" in assert_problem(response, 422, "invalid-webhook")["detail"]


def test_an_unknown_event_type_is_refused_by_the_schema(api, patient):
    response = api.post("/v1/webhooks", json={"url": "https://hooks.example.org/x", "events": ["slot.opened"]},
                        headers=patient)
    assert_problem(response, 422)


def test_a_client_has_at_most_ten_subscriptions(api, patient):
    for number in range(MAX_SUBSCRIPTIONS_PER_OWNER):
        subscribe(api, patient, f"https://hooks.example.org/{number}")
    response = api.post("/v1/webhooks", json={"url": "https://hooks.example.org/x", "events": [
        "consultation.confirmed"]}, headers=patient)
    assert_problem(response, 409, "too-many-webhooks")


def test_an_auditor_may_not_subscribe(api, token):
    response = api.post("/v1/webhooks", json={"url": "https://hooks.example.org/x", "events": [
        "consultation.confirmed"]}, headers=token("aud-1", "AUDITOR"))
    assert_problem(response, 403)


def test_the_schema_names_exactly_the_event_types_the_domain_sends():
    assert WebhookEventType.__args__ == EVENT_TYPES
