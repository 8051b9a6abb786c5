"""The authorization matrix, operation by operation, and the negative token matrix on each.

Every operation of the OpenAPI document must have a row here (and in ``REQUIRED_SCOPE``):
a new endpoint without one fails ``test_every_operation_has_a_row``. Each row says which
callers may use the operation; every other caller must be refused with 403, and no caller
with a bad token may get past 401.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc.jwk import ECKey
from litestar.testing import TestClient

from application.bootstrap import bootstrap
from application.settings import Settings
from infrastructure.security.scopes import scopes_for_roles
from infrastructure.security.tokens import TokenIssuer
from interfaces.http.app import create_app
from interfaces.http.authorization import REQUIRED_SCOPE
from interfaces.http.spec import openapi_document
from tests.e2e.conftest import START, assert_problem, book, open_slot, register_doctor, register_patient

ISSUER, AUDIENCE = "clinic-dev", "clinic-api"
DAY = START[:10]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    """Template: {patient} {doctor} {consultation} {saga} are the world's; see ``World.url``."""
    allowed: tuple[str, ...]
    """The personas authorised; every other persona must get 403."""
    body: Any = None


EVERYONE = ("own patient", "other patient", "assigned doctor", "other doctor", "auditor", "admin")
SUBSCRIBERS = ("own patient", "other patient", "assigned doctor", "other doctor", "admin")
WEBHOOK = {"url": "https://hooks.example.org/clinic", "events": ["consultation.confirmed"]}
MATRIX: dict[str, Operation] = {
    "live": Operation("GET", "/health/live", ()),
    "ready": Operation("GET", "/health/ready", ()),
    "registerPatient": Operation("POST", "/v1/patients", ("admin",), {
        "name": "Rita", "email": "rita@example.org", "birth_date": "1990-02-02", "consent": True}),
    "getPatient": Operation("GET", "/v1/patients/{patient}", ("own patient", "admin")),
    "listPatientRecordAccess": Operation("GET", "/v1/patients/{patient}/access-log",
                                         ("own patient", "auditor", "admin")),
    "registerDoctor": Operation("POST", "/v1/doctors", ("admin",), {"name": "Dr Vera", "specialty": "gp"}),
    "deactivateDoctor": Operation("POST", "/v1/doctors/{other_doctor}/deactivate", ("admin",)),
    "listDoctorSlots": Operation("GET", "/v1/doctors/{doctor}/slots?date=" + DAY,
                                 ("own patient", "other patient", "assigned doctor", "other doctor", "auditor",
                                  "admin")),
    "openSlots": Operation("POST", "/v1/doctors/{doctor}/slots", ("admin",),
                           {"slots": [{"start": "2027-03-01T09:00:00Z", "duration_minutes": 30}]}),
    "listDoctors": Operation("GET", "/v1/doctors?specialty=gp", EVERYONE),
    "getDoctor": Operation("GET", "/v1/doctors/{doctor}", EVERYONE),
    "closeSlot": Operation("POST", "/v1/doctors/{doctor}/slots/{free_slot}/close", ("assigned doctor", "admin")),
    "reopenSlot": Operation("POST", "/v1/doctors/{doctor}/slots/{free_slot}/reopen", ("assigned doctor", "admin")),
    "openAvailability": Operation("POST", "/v1/doctors/{doctor}/availability", ("assigned doctor", "admin"), {
        "weekdays": ["TUE"], "opens": "14:00", "closes": "15:00", "slot_minutes": 30, "first_day": "2027-03-01",
        "weeks": 1, "time_zone": "UTC"}),
    "bookConsultation": Operation("POST", "/v1/consultations", ("own patient", "admin"), {
        "patient_id": "{patient}", "doctor_id": "{doctor}", "start": "2027-04-01T09:00:00Z", "reason": "x"}),
    "getConsultation": Operation("GET", "/v1/consultations/{consultation}",
                                 ("own patient", "assigned doctor", "admin")),
    "getConsultationV2": Operation("GET", "/v2/consultations/{consultation}",
                                   ("own patient", "assigned doctor", "admin")),
    # a stream stays open while its consultation may still change: the rejected one's ends after one event
    "streamConsultationEvents": Operation("GET", "/v1/consultations/{rejected}/events",
                                          ("own patient", "assigned doctor", "admin")),
    "cancelConsultation": Operation("POST", "/v1/consultations/{consultation}/cancel", ("own patient", "admin"),
                                    {"reason": "cannot come"}),
    "rescheduleConsultation": Operation("POST", "/v1/consultations/{consultation}/reschedule",
                                        ("own patient", "admin"), {"start": "2027-01-05T10:00:00Z"}),
    "listPatientConsultations": Operation("GET", "/v1/patients/{patient}/consultations", ("own patient", "admin")),
    "getDoctorAgenda": Operation("GET", "/v1/doctors/{doctor}/agenda?date=" + DAY, ("assigned doctor", "admin")),
    "completeConsultation": Operation("POST", "/v1/consultations/{consultation}/complete",
                                      ("assigned doctor", "admin")),
    "markConsultationNoShow": Operation("POST", "/v1/consultations/{consultation}/no-show",
                                        ("assigned doctor", "admin")),
    "addClinicalNote": Operation("POST", "/v1/consultations/{consultation}/notes", ("assigned doctor", "admin"),
                                 {"text": "BP 120/80"}),
    "listClinicalNotes": Operation("GET", "/v1/consultations/{consultation}/notes", ("assigned doctor", "admin")),
    "listSagas": Operation("GET", "/v1/sagas", ("auditor", "admin")),
    "getSaga": Operation("GET", "/v1/sagas/{saga}", ("auditor", "admin")),
    # the world's saga has ended: an admin is answered 409, everyone else refused
    "retrySagaValidation": Operation("POST", "/v1/sagas/{saga}/retry-validation", ("admin",)),
    "compensateSaga": Operation("POST", "/v1/sagas/{saga}/compensate", ("admin",)),
    # a stream lasts STREAM_SECONDS here; the world's saga has ended, so its own stream ends after one event
    "streamSagaChanges": Operation("GET", "/v1/sagas/events", ("auditor", "admin")),
    "streamSagaEvents": Operation("GET", "/v1/sagas/{saga}/events", ("auditor", "admin")),
    "auditAggregate": Operation("GET", "/v1/audit/consultation/{consultation}", ("auditor", "admin")),
    "listReadModels": Operation("GET", "/v1/read-models", ("auditor", "admin")),
    "getReadModel": Operation("GET", "/v1/read-models/doctor_directory", ("auditor", "admin")),
    "rebuildReadModel": Operation("POST", "/v1/read-models/doctor_directory/rebuild", ("admin",)),
    # 404 until a rebuild was started; then it follows that one to its end
    "streamReadModelRebuild": Operation("GET", "/v1/read-models/doctor_directory/rebuild/events", ("auditor", "admin")),
    "createWebhook": Operation("POST", "/v1/webhooks", SUBSCRIBERS, WEBHOOK),
    "listWebhooks": Operation("GET", "/v1/webhooks", SUBSCRIBERS),
    "getWebhook": Operation("GET", "/v1/webhooks/{webhook}", ("own patient", "admin")),
    "listWebhookDeliveries": Operation("GET", "/v1/webhooks/{webhook}/deliveries", ("own patient", "admin")),
    # deleting twice changes nothing: the owner and an admin may, in any order
    "deleteWebhook": Operation("DELETE", "/v1/webhooks/{doomed_webhook}", ("own patient", "admin")),
}
STREAM_SECONDS = 0.3
"""How long a stream lasts in this world: the allowed callers' calls end."""
PERSONAS = ("own patient", "other patient", "assigned doctor", "other doctor", "auditor", "admin")
PROTECTED = [name for name, op in MATRIX.items() if REQUIRED_SCOPE.get(name)]
ON_A_RESOURCE = [name for name in PROTECTED if any(f"{{{kind}}}" in MATRIX[name].path
                                                   for kind in ("consultation", "rejected", "saga", "webhook"))]


@dataclass
class World:
    api: TestClient[Any]
    issuer: TokenIssuer
    ids: dict[str, str]
    subjects: dict[str, tuple[str, str]]

    def url(self, template: str, **override: str) -> str:
        return template.format(**(self.ids | override))

    def body(self, operation: Operation) -> Any:
        if operation.body is None:
            return None
        return json.loads(json.dumps(operation.body).replace("{patient}", self.ids["patient"]).replace(
            "{doctor}", self.ids["doctor"]))

    def headers(self, persona: str, **claims: Any) -> dict[str, str]:
        sub, role = self.subjects[persona]
        return {"Authorization": f"Bearer {self.issuer.issue(sub, [role], **claims)}"}

    def call(self, name: str, headers: dict[str, str], **override: str) -> Any:
        operation = MATRIX[name]
        return self.api.request(operation.method, self.url(operation.path, **override), headers=headers,
                                json=self.body(operation))


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    clinic = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05))
    issuer = TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), ISSUER, AUDIENCE)
    with TestClient(create_app(clinic, issuer.verifier(), stream_seconds=STREAM_SECONDS)) as api:
        admin = {"Authorization": f"Bearer {issuer.issue('ops-1', ['ADMIN'])}"}
        patient, other_patient = register_patient(api, admin, "Ana"), register_patient(api, admin, "Bia")
        doctor, other_doctor = register_doctor(api, admin), register_doctor(api, admin, "Dr Leo")
        open_slot(api, admin, doctor)
        free_slot = open_slot(api, admin, doctor, "2027-06-01T09:00:00Z")
        booked = book(api, admin, patient, doctor).json()
        rejected = book(api, admin, patient, doctor, start="2027-05-01T09:00:00Z").json()  # no slot there
        clinic.wait_until_settled()
        own = {"Authorization": f"Bearer {issuer.issue(patient, ['PATIENT'])}"}
        webhook, doomed = (api.post("/v1/webhooks", json=WEBHOOK, headers=own).json()["webhook_id"] for _ in range(2))
        ids = {"patient": patient, "doctor": doctor, "other_doctor": other_doctor,
               "consultation": booked["consultation_id"], "saga": booked["saga_id"],
               "rejected": rejected["consultation_id"], "free_slot": free_slot, "webhook": webhook,
               "doomed_webhook": doomed}
        subjects = {"own patient": (patient, "PATIENT"), "other patient": (other_patient, "PATIENT"),
                    "assigned doctor": (doctor, "DOCTOR"), "other doctor": (other_doctor, "DOCTOR"),
                    "auditor": ("auditor-1", "AUDITOR"), "admin": ("ops-1", "ADMIN")}
        yield World(api, issuer, ids, subjects)
    clinic.close()


def operations_in(document: dict[str, Any]) -> set[str]:
    return {op["operationId"] for path in document["paths"].values() for op in path.values()}


def test_every_operation_has_a_row():
    generated = operations_in(openapi_document())
    committed = operations_in(json.loads(Path("specs/openapi.json").read_text()))
    assert generated == committed == set(MATRIX) == set(REQUIRED_SCOPE)


def test_every_protected_operation_documents_401_and_403():
    for path in openapi_document()["paths"].values():
        for operation in path.values():
            if REQUIRED_SCOPE[operation["operationId"]]:
                assert {"401", "403"} <= set(operation["responses"]), operation["operationId"]


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("name", PROTECTED)
def test_the_matrix(world, name, persona):
    response = world.call(name, world.headers(persona))
    if persona in MATRIX[name].allowed:
        assert response.status_code not in (401, 403), response.text
    else:
        assert_problem(response, 403)


@pytest.mark.parametrize("name", PROTECTED)
def test_the_operations_scope_is_required_even_of_an_allowed_caller(world, name):
    persona = MATRIX[name].allowed[-1]
    _, role = world.subjects[persona]
    scope = sorted(scopes_for_roles([role]) - set(REQUIRED_SCOPE[name]))
    response = world.call(name, world.headers(persona, scope=scope))
    assert_problem(response, 403, "insufficient-scope")
    assert "insufficient_scope" in response.headers["www-authenticate"]


@pytest.mark.parametrize("name", ON_A_RESOURCE)
def test_a_refusal_does_not_tell_whether_the_resource_exists(world, name):
    for persona in set(PERSONAS) - set(MATRIX[name].allowed):
        headers = world.headers(persona)
        theirs = assert_problem(world.call(name, headers), 403)
        missing = assert_problem(world.call(name, headers, consultation=str(uuid.uuid4()), saga=str(uuid.uuid4()),
                                            rejected=str(uuid.uuid4()), webhook=str(uuid.uuid4())), 403)
        assert (theirs["type"], theirs["detail"]) == (missing["type"], missing["detail"]), persona


# Bad tokens ------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "ops-1", "iat": now, "exp": now + 300, "roles": ["ADMIN"],
            "scope": " ".join(sorted(scopes_for_roles(["ADMIN"])))} | changes


def alg_none(issuer: TokenIssuer) -> str:
    return _unsigned({"alg": "none", "typ": "at+jwt"}, _claims()) + "."


def hs256_with_the_public_key(issuer: TokenIssuer) -> str:
    public_pem = issuer.key.get_op_key("verify").public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = _unsigned({"alg": "HS256", "typ": "at+jwt", "kid": issuer.key.kid}, _claims())
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def tampered(issuer: TokenIssuer) -> str:
    header, _, signature = issuer.issue("p-1", ["PATIENT"]).split(".")
    return f"{header}.{_b64(json.dumps(_claims()).encode())}.{signature}"


def unknown_kid(issuer: TokenIssuer) -> str:
    return TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), ISSUER, AUDIENCE).issue("ops-1", ["ADMIN"])


BAD_TOKENS = {
    "no token": None,
    "malformed": lambda issuer: "not-a.jwt",
    "expired": lambda issuer: issuer.issue("ops-1", ["ADMIN"], ttl_seconds=-3600),
    "not yet valid": lambda issuer: issuer.issue("ops-1", ["ADMIN"], nbf=int(time.time()) + 3600),
    "wrong iss": lambda issuer: TokenIssuer(issuer.key, "someone-else", AUDIENCE).issue("ops-1", ["ADMIN"]),
    "wrong aud": lambda issuer: TokenIssuer(issuer.key, ISSUER, "another-api").issue("ops-1", ["ADMIN"]),
    "unknown kid": unknown_kid,
    "tampered payload": tampered,
    "alg none": alg_none,
    "HS256 with the public key": hs256_with_the_public_key,
}


@pytest.mark.parametrize("kind", BAD_TOKENS)
@pytest.mark.parametrize("name", PROTECTED)
def test_a_bad_token_is_refused_with_401(world, name, kind, caplog):
    make = BAD_TOKENS[kind]
    token = make(world.issuer) if make else None
    response = world.call(name, {"Authorization": f"Bearer {token}"} if token else {})
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert token is None or token not in caplog.text


def test_the_public_operations_need_no_token(world):
    for name in set(MATRIX) - set(PROTECTED):
        assert world.call(name, {}).status_code == 200
