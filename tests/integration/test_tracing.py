"""One booking in embedded mode is one trace: HTTP request, appends, saga steps, read model.

The whole clinic in process (in-memory stores, the embedded runner in its thread, the HTTP app
behind a TestClient), with a tracer provider that keeps spans in memory (``tests/spans.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from joserfc.jwk import ECKey
from litestar.testing import TestClient
from opentelemetry.trace import SpanKind

from application.bootstrap import bootstrap
from application.settings import Settings
from infrastructure.security.tokens import TokenIssuer
from interfaces.http.app import create_app
from tests.spans import Spans, installed_spans

START = "2027-01-05T09:00:00Z"
CORRELATION_ID = "trace-booking-1"


@pytest.fixture
def spans() -> Iterator[Spans]:
    with installed_spans("clinic") as installed:
        yield installed


@pytest.fixture
def world(spans: Spans) -> Iterator[tuple[Any, TestClient[Any], TokenIssuer]]:
    issuer = TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), "clinic-dev", "clinic-api")
    clinic = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05))
    with TestClient(create_app(clinic, issuer.verifier(), tracer_provider=spans.provider)) as api:
        yield clinic, api, issuer
    clinic.close()


def bearer(issuer: TokenIssuer, sub: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue(sub, [role])}"}


def book_one(clinic: Any, api: TestClient[Any], issuer: TokenIssuer) -> str:
    """Register a patient and a doctor, open a slot, let the read side settle; then book (returns its id)."""
    admin = bearer(issuer, "ops-1", "ADMIN")
    patient = api.post("/v1/patients", headers=admin, json={
        "name": "Ana", "email": "ana@example.org", "birth_date": "1990-01-01", "consent": True}).json()["patient_id"]
    doctor = api.post("/v1/doctors", headers=admin, json={"name": "Dr Rui", "specialty": "gp"}).json()["doctor_id"]
    assert api.post(f"/v1/doctors/{doctor}/slots", headers=admin,
                    json={"slots": [{"start": START, "duration_minutes": 30}]}).status_code == 201
    clinic.runner.wait_until_idle()  # so no read-model batch mixes the set-up's traces with the booking's
    response = api.post("/v1/consultations", json={"patient_id": patient, "doctor_id": doctor, "start": START,
                                                   "reason": "check-up"},
                        headers={**bearer(issuer, patient, "PATIENT"), "X-Correlation-Id": CORRELATION_ID})
    assert response.status_code == 202, response.text
    clinic.runner.wait_until_idle()
    return response.json()["consultation_id"]


def test_one_booking_is_one_trace_from_the_request_to_the_read_model(spans, world):
    # given a running clinic; when one booking is made and processed
    clinic, api, issuer = world
    consultation_id = book_one(clinic, api, issuer)
    assert clinic.consultations.repository.get(__import__("uuid").UUID(consultation_id)).status.value == "CONFIRMED"
    # then one trace, rooted at the POST's server span, holds every step
    [root] = [s for s in spans.named("POST /v1/consultations") if s.kind == SpanKind.SERVER]
    assert root.parent is None
    assert root.attributes["clinic.correlation_id"] == CORRELATION_ID
    assert root.attributes["http.route"] == "/v1/consultations"
    booking = [s for s in spans.finished() if s.context.trace_id == root.context.trace_id]
    names = {s.name for s in booking}
    assert {"saga.hold_slot", "saga.validate_registrants", "saga.confirm", "process Consultation.Requested",
            "process BookingSaga.Started", "process BookingSaga.Completed", "memory.apply_batch"} <= names, names
    appends = {(s.attributes["eventstore.application"], tuple(s.attributes["eventstore.topics"]))
               for s in booking if s.name == "eventstore.append"}
    assert {("Consultations", ("Consultation.Requested",)), ("Booking", ("BookingSaga.Started",)),
            ("Consultations", ("Consultation.Confirmed",))} <= appends
    # and the spans form one tree: every parent is in the trace, and only the root has none
    ids = {s.context.span_id for s in booking}
    assert [s for s in booking if s.parent is None] == [root]
    assert all(s.parent.span_id in ids for s in booking if s.parent is not None)


def test_saga_steps_say_which_saga_and_how_it_ended(spans, world):
    clinic, api, issuer = world
    consultation_id = book_one(clinic, api, issuer)
    [confirm] = spans.named("saga.confirm")
    assert confirm.attributes["consultation.id"] == consultation_id
    assert confirm.attributes["saga.outcome"] == "COMPLETED"
    assert confirm.attributes["saga.id"]
    assert all(s.attributes["db.system"] == "memory" for s in spans.named("eventstore.append"))


def test_probes_are_not_traced(spans, world):
    _, api, _ = world
    assert api.get("/health/live").status_code == 200
    assert spans.finished() == []


def test_a_reschedule_is_one_trace_from_its_request_to_the_old_slot_released(spans, world):
    # given a confirmed booking and another open slot
    clinic, api, issuer = world
    consultation_id = book_one(clinic, api, issuer)
    admin = bearer(issuer, "ops-1", "ADMIN")
    doctor = api.get(f"/v1/consultations/{consultation_id}", headers=admin).json()["doctor_id"]
    later = "2027-01-05T10:00:00Z"
    assert api.post(f"/v1/doctors/{doctor}/slots", headers=admin,
                    json={"slots": [{"start": later, "duration_minutes": 30}]}).status_code == 201
    clinic.runner.wait_until_idle()
    # when it is moved there
    response = api.post(f"/v1/consultations/{consultation_id}/reschedule", json={"start": later}, headers=admin)
    assert response.status_code == 202, response.text
    clinic.runner.wait_until_idle()
    # then the request's trace holds each step of the reschedule saga, down to the old slot's release
    [root] = [s for s in spans.named("POST /v1/consultations/{consultation_id}/reschedule") if s.kind == SpanKind.SERVER]
    moved = [s for s in spans.finished() if s.context.trace_id == root.context.trace_id]
    names = {s.name for s in moved}
    assert {"saga.hold_slot", "saga.validate_registrants", "saga.confirm", "saga.release_old_slot",
            "process Consultation.RescheduleRequested", "process RescheduleSaga.Started",
            "process RescheduleSaga.SlotBooked", "process RescheduleSaga.Completed"} <= names, names
    [release] = [s for s in moved if s.name == "saga.release_old_slot"]
    assert (release.attributes["saga.id"], release.attributes["saga.outcome"]) == (
        response.json()["saga_id"], "COMPLETED")
