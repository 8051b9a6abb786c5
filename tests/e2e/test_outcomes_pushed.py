"""A client learns a booking's outcome without polling: a read that waits for the decision
(``Prefer: wait``, RFC 7240) and a stream of the consultation's changes (server-sent events).

A real server (uvicorn on a loopback port) over the in-memory clinic, since a stream stays open;
the registry is held behind a gate, so the test decides when the saga can decide.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from uuid import UUID

import httpx
import pytest
from joserfc.jwk import ECKey

from application.bootstrap import bootstrap
from application.clinic import Clinic
from application.settings import Settings
from infrastructure.security.tokens import TokenIssuer
from interfaces.http.app import create_app
from tests.e2e.conftest import START, assert_problem
from tests.integration.http_servers import client_of
from tests.kit import FakeRegistry

ISSUER = TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), "clinic-dev", "clinic-api")
ADMIN = {"Authorization": f"Bearer {ISSUER.issue('ops-1', ['ADMIN'])}"}


@pytest.fixture
def clinic() -> Iterator[Clinic]:
    clinic = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05))
    clinic.booking.registry = FakeRegistry(inner=clinic.booking.registry, gated=True)  # the test opens it
    yield clinic
    clinic.booking.registry.open()
    clinic.close()


@pytest.fixture
def api(clinic: Clinic) -> Iterator[httpx.Client]:
    app = create_app(clinic, ISSUER.verifier())
    with client_of(app) as client:
        yield client


def booked(api: httpx.Client) -> tuple[str, dict[str, str]]:
    """A patient's booking, accepted and waiting for the registry; its id and the patient's headers."""
    patient = api.post("/v1/patients", headers=ADMIN, json={
        "name": "Ana", "email": "ana@example.org", "birth_date": "1990-01-01", "consent": True}).json()["patient_id"]
    doctor = api.post("/v1/doctors", headers=ADMIN, json={"name": "Dr Rui", "specialty": "gp"}).json()["doctor_id"]
    assert api.post(f"/v1/doctors/{doctor}/slots", headers=ADMIN,
                    json={"slots": [{"start": START, "duration_minutes": 30}]}).status_code == 201
    headers = {"Authorization": f"Bearer {ISSUER.issue(patient, ['PATIENT'])}"}
    accepted = api.post("/v1/consultations", headers=headers, json={
        "patient_id": patient, "doctor_id": doctor, "start": START, "reason": "check-up"})
    assert accepted.status_code == 202, accepted.text
    return accepted.json()["consultation_id"], headers


def open_gate_after(clinic: Clinic, seconds: float) -> threading.Thread:
    opener = threading.Timer(seconds, clinic.booking.registry.open)
    opener.start()
    return opener


def test_a_read_preferring_to_wait_answers_once_the_saga_has_decided(api, clinic):
    consultation_id, patient = booked(api)
    assert api.get(f"/v1/consultations/{consultation_id}", headers=patient).json()["status"] == "REQUESTED"
    open_gate_after(clinic, 0.3)
    started = time.monotonic()
    response = api.get(f"/v1/consultations/{consultation_id}", headers={**patient, "Prefer": "wait=10"})
    assert (response.status_code, response.json()["status"]) == (200, "CONFIRMED")
    assert 0.3 <= time.monotonic() - started < 5
    assert response.headers["Preference-Applied"] == "wait=10"
    assert response.headers["ETag"] == '"2"'


def test_a_wait_that_runs_out_answers_the_booking_as_it_is(api, clinic):
    consultation_id, patient = booked(api)
    started = time.monotonic()
    response = api.get(f"/v2/consultations/{consultation_id}", headers={**patient, "Prefer": "wait=0.5"})
    assert (response.status_code, response.json()["status"]["code"]) == (200, "REQUESTED")
    assert 0.5 <= time.monotonic() - started < 3
    assert response.headers["Preference-Applied"] == "wait=0.5"


def test_the_stream_sends_the_consultation_then_each_change_and_ends_when_it_is_settled(api, clinic):
    consultation_id, patient = booked(api)
    path = f"/v1/consultations/{consultation_id}/events"
    with api.stream("GET", path, headers=patient) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = iter_events(stream)
        assert next(events) == ("consultation", "1", "REQUESTED")
        clinic.booking.registry.open()
        assert next(events) == ("consultation", "2", "CONFIRMED")
        cancelled = api.post(f"/v1/consultations/{consultation_id}/cancel", headers=patient,
                             json={"reason": "cannot come"})
        assert cancelled.status_code == 200, cancelled.text
        assert next(events) == ("consultation", "3", "CANCELLED")
        assert next(events, None) is None  # settled: the stream ends


def test_a_reconnecting_client_gets_only_what_it_has_not_seen(api, clinic):
    consultation_id, patient = booked(api)
    headers = {**patient, "Last-Event-ID": "1"}
    open_gate_after(clinic, 0.3)
    with api.stream("GET", f"/v1/consultations/{consultation_id}/events", headers=headers) as stream:
        assert next(iter_events(stream)) == ("consultation", "2", "CONFIRMED")


def test_only_who_may_read_the_consultation_may_follow_it(api, clinic):
    consultation_id, _ = booked(api)
    stranger = {"Authorization": f"Bearer {ISSUER.issue('00000000-0000-0000-0000-000000000001', ['PATIENT'])}"}
    assert_problem(api.get(f"/v1/consultations/{consultation_id}/events", headers=stranger), 403, "forbidden")
    assert_problem(api.get(f"/v1/consultations/{UUID(int=7)}/events", headers=ADMIN), 404, "not-found")


def iter_events(stream: httpx.Response) -> Iterator[tuple[str, str, str]]:
    """``(event, id, status)`` of each event the stream sends, skipping keep-alive comments."""
    fields: dict[str, str] = {}
    for line in stream.iter_lines():
        if not line:
            if fields.get("data"):  # as EventSource does: an empty data buffer dispatches nothing
                yield fields["event"], fields["id"], json.loads(fields["data"])["status"]
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.strip()
