"""Every response header the API sends is in the OpenAPI document, and every required one is sent.

One story calls every operation successfully (as an admin, reading after its own writes) and
compares each answer's headers with those the committed document gives that status. Left out:
the transport's own (``content-type``, ``content-length``, ``date``, ``server``, ``connection``) and the security
headers every response carries (``middleware.SECURITY_HEADERS``, listed in docs/security.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey
from litestar.testing import TestClient

from application.bootstrap import bootstrap
from application.settings import Settings
from infrastructure.security.tokens import TokenIssuer
from interfaces.http.app import create_app
from interfaces.http.middleware import SECURITY_HEADERS
from process_managers.ports import RegistryUnavailableError
from tests.e2e.conftest import START, book, open_slot, register_doctor, register_patient
from tests.kit import FakeRegistry

SPEC = json.loads((Path(__file__).resolve().parents[2] / "specs" / "openapi.json").read_text())
OPERATIONS = {op["operationId"]: (path, method) for path, item in SPEC["paths"].items() for method, op in item.items()}
UNDOCUMENTED = {"content-type", "content-length", "date", "server", "connection"} | {name.lower() for name in SECURITY_HEADERS}
ISSUER = TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), "clinic-dev", "clinic-api")
ADMIN = {"Authorization": f"Bearer {ISSUER.issue('ops-1', ['ADMIN'])}"}


def documented(name: str, status: int) -> dict[str, dict[str, Any]]:
    path, method = OPERATIONS[name]
    headers = SPEC["paths"][path][method]["responses"][str(status)].get("headers", {})
    return {header.lower(): spec for header, spec in headers.items()}


def test_every_header_sent_is_documented_and_every_required_one_sent():
    clinic = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05))
    answers: dict[str, Any] = {}
    try:
        with TestClient(create_app(clinic, ISSUER.verifier(), stream_seconds=0.3)) as api:
            answers |= story(api, clinic)
    finally:
        clinic.close()
    assert set(answers) == set(OPERATIONS), "the story must call every operation"
    for name, response in answers.items():
        assert response.status_code < 300, (name, response.text)
        promised = documented(name, response.status_code)
        sent = {header.lower() for header in response.headers} - UNDOCUMENTED
        assert sent <= set(promised), f"{name} sends undocumented headers: {sorted(sent - set(promised))}"
        required = {header for header, spec in promised.items() if spec.get("required")}
        assert required <= sent, f"{name} does not send {sorted(required - sent)}"


def open_slot_at(api: TestClient[Any], doctor: str, day: str) -> str:
    """Open the doctor's 09:00 slot on ``day``; returns its start."""
    open_slot(api, ADMIN, doctor, f"{day}T09:00:00Z")
    return f"{day}T09:00:00Z"


def story(api: TestClient[Any], clinic: Any) -> dict[str, Any]:
    answers: dict[str, Any] = {"live": api.get("/health/live"), "ready": api.get("/health/ready")}
    registered = api.post("/v1/patients", json={"name": "Rita", "email": "rita@example.org",
                                                 "birth_date": "1990-02-02", "consent": True}, headers=ADMIN)
    answers["registerPatient"] = registered
    patient, doctor = register_patient(api, ADMIN), register_doctor(api, ADMIN)
    answers["registerDoctor"] = api.post("/v1/doctors", json={"name": "Dr Leo", "specialty": "gp"}, headers=ADMIN)
    answers["openSlots"] = api.post(f"/v1/doctors/{doctor}/slots", headers=ADMIN, json={
        "slots": [{"start": "2027-02-01T09:00:00Z", "duration_minutes": 30}]})
    answers["openAvailability"] = api.post(f"/v1/doctors/{doctor}/availability", headers=ADMIN, json={
        "weekdays": ["TUE"], "opens": "14:00", "closes": "15:00", "slot_minutes": 30, "first_day": "2027-03-01",
        "weeks": 1, "time_zone": "UTC"})
    free = answers["openAvailability"].json()["slot_ids"][0]
    answers["closeSlot"] = api.post(f"/v1/doctors/{doctor}/slots/{free}/close", headers=ADMIN)
    answers["reopenSlot"] = api.post(f"/v1/doctors/{doctor}/slots/{free}/reopen", headers=ADMIN)
    open_slot(api, ADMIN, doctor)
    answers["bookConsultation"] = booked = book(api, ADMIN, patient, doctor)
    seen, missed = (book(api, ADMIN, patient, doctor, open_slot_at(api, doctor, day)).json()["consultation_id"]
                    for day in ("2027-02-02", "2027-02-03"))
    consultation, saga = booked.json()["consultation_id"], booked.json()["saga_id"]
    fresh = {**ADMIN, "X-Min-Position": booked.headers["X-Event-Position"]}
    clinic.wait_until_settled()
    day = START[:10]
    answers |= {
        "getPatient": api.get(f"/v1/patients/{patient}", headers=ADMIN),
        "listDoctors": api.get("/v1/doctors", headers=fresh),
        "getDoctor": api.get(f"/v1/doctors/{doctor}", headers=fresh),
        "listPatientRecordAccess": api.get(f"/v1/patients/{patient}/access-log", headers=ADMIN),
        "listDoctorSlots": api.get(f"/v1/doctors/{doctor}/slots?date={day}", headers=fresh),
        "getConsultation": api.get(f"/v1/consultations/{consultation}", headers={**fresh, "Prefer": "wait=1"}),
        "getConsultationV2": api.get(f"/v2/consultations/{consultation}", headers=fresh),
        "listPatientConsultations": api.get(f"/v1/patients/{patient}/consultations", headers=fresh),
        "getDoctorAgenda": api.get(f"/v1/doctors/{doctor}/agenda?date={day}", headers=fresh),
        "listSagas": api.get("/v1/sagas", headers=fresh),
        "getSaga": api.get(f"/v1/sagas/{saga}", headers=fresh),
        "auditAggregate": api.get(f"/v1/audit/consultation/{consultation}", headers=ADMIN),
        "addClinicalNote": api.post(f"/v1/consultations/{consultation}/notes", json={"text": "BP 120/80"},
                                    headers=ADMIN),
        "listClinicalNotes": api.get(f"/v1/consultations/{consultation}/notes", headers=ADMIN),
        "rescheduleConsultation": api.post(f"/v1/consultations/{consultation}/reschedule",
                                           json={"start": "2027-02-01T09:00:00Z"}, headers=ADMIN),
        "completeConsultation": api.post(f"/v1/consultations/{seen}/complete", headers=ADMIN),
        "markConsultationNoShow": api.post(f"/v1/consultations/{missed}/no-show", headers=ADMIN),
        "cancelConsultation": api.post(f"/v1/consultations/{consultation}/cancel", json={"reason": "cannot come"},
                                       headers=ADMIN),
        "deactivateDoctor": api.post(f"/v1/doctors/{doctor}/deactivate", headers=ADMIN),
    }
    clinic.wait_until_settled()  # cancelled: its stream of events ends after the one it has
    answers["streamConsultationEvents"] = api.get(f"/v1/consultations/{consultation}/events", headers=ADMIN)
    answers["streamSagaEvents"] = api.get(f"/v1/sagas/{saga}/events", headers=ADMIN)  # ended: one event
    answers["streamSagaChanges"] = api.get("/v1/sagas/events", headers=ADMIN)  # for the app's 0.3 s
    answers["listReadModels"] = api.get("/v1/read-models", headers=ADMIN)
    answers["getReadModel"] = api.get("/v1/read-models/doctor_directory", headers=ADMIN)
    answers["rebuildReadModel"] = api.post("/v1/read-models/doctor_directory/rebuild", headers=ADMIN)
    answers["streamReadModelRebuild"] = api.get("/v1/read-models/doctor_directory/rebuild/events", headers=ADMIN)
    clinic.booking.registry = FakeRegistry(RegistryUnavailableError("registry down"))  # a saga waits on it
    stuck = book(api, ADMIN, patient, doctor, open_slot_at(api, doctor, "2027-02-04")).json()["saga_id"]
    clinic.wait_until_settled()
    answers["retrySagaValidation"] = api.post(f"/v1/sagas/{stuck}/retry-validation", headers=ADMIN)
    answers["compensateSaga"] = api.post(f"/v1/sagas/{stuck}/compensate", headers=ADMIN)
    answers["createWebhook"] = created = api.post("/v1/webhooks", headers=ADMIN, json={
        "url": "https://hooks.example.org/clinic", "events": ["consultation.confirmed"]})
    webhook = created.json()["webhook_id"]
    answers |= {"listWebhooks": api.get("/v1/webhooks", headers=ADMIN),
                "getWebhook": api.get(f"/v1/webhooks/{webhook}", headers=ADMIN),
                "listWebhookDeliveries": api.get(f"/v1/webhooks/{webhook}/deliveries", headers=ADMIN),
                "deleteWebhook": api.delete(f"/v1/webhooks/{webhook}", headers=ADMIN)}
    return answers
