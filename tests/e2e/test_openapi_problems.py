"""The error responses the OpenAPI document promises really happen: nothing is documented for show.

schemathesis proves the app answers no status the document lacks; these tests prove the
reverse for the problem types ``interfaces/http/openapi.py`` documents: for every operation,
each problem its kind can answer (``framework_problems``) is provoked and must come back with
its status and type, as must every ``not-found`` of ``OUTCOMES``; ``forbidden`` is documented
exactly where the authorization matrix has a persona who is refused.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey
from litestar.testing import TestClient

from application.bootstrap import bootstrap, migrate
from application.settings import Settings
from domain.webhooks import MAX_SUBSCRIPTIONS_PER_OWNER
from infrastructure.security.tokens import TokenIssuer
from interfaces.http.app import create_app
from interfaces.http.authorization import REQUIRED_SCOPE
from interfaces.http.deprecation import DEPRECATIONS
from interfaces.http.openapi import OUTCOMES, PROBLEM_TYPES, framework_problems
from interfaces.http.problems import RETRY_AFTER_SECONDS
from tests.e2e.conftest import START, assert_problem, book, open_slot, register_doctor, register_patient
from tests.e2e.test_authorization_matrix import MATRIX, PERSONAS
from tests.private_servers import PrivatePostgres, PrivateRedis, private_postgres, private_redis  # noqa: F401

SPEC = json.loads((Path(__file__).resolve().parents[2] / "specs" / "openapi.json").read_text())
OPERATIONS = {op["operationId"]: (path, method, op) for path, item in SPEC["paths"].items()
              for method, op in item.items()}
ISSUER = TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), "clinic-dev", "clinic-api")
ADMIN = {"Authorization": f"Bearer {ISSUER.issue('ops-1', ['ADMIN'])}"}
CONCURRENT_ONLY = {("deactivateDoctor", "version-conflict"), ("addClinicalNote", "version-conflict"),
                   ("completeConsultation", "version-conflict"), ("markConsultationNoShow", "version-conflict"),
                   ("closeSlot", "version-conflict"), ("reopenSlot", "version-conflict"),
                   ("openAvailability", "slot-already-open"), ("createWebhook", "version-conflict"),
                   ("deleteWebhook", "version-conflict"), ("retrySagaValidation", "version-conflict"),
                   ("compensateSaga", "version-conflict")}
"""Outcomes only a concurrent write provokes (the save loses the race: IntegrityError), not this story."""
BAD_VALUES = {"integer": "not-a-number", "date": "2027-13-45", "date-time": "1e10"}  # a number was once read as a moment


@pytest.fixture(scope="module")
def api() -> Iterator[TestClient[Any]]:
    clinic = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05))
    with TestClient(create_app(clinic, ISSUER.verifier())) as client:
        yield client
    clinic.close()


NAMED = {"kind": "consultation", "name": "saga_status"}
"""Path parameters that name something rather than identify it: a name that exists."""


def url(path: str, operation: dict[str, Any], **override: str) -> str:
    """``path`` with a fresh UUID for each id (or ``override``), and every required query parameter."""
    values = {p["name"]: override.get(p["name"], NAMED.get(p["name"], str(uuid.uuid4())))
              for p in operation.get("parameters", []) if p["in"] == "path"}
    query = {p["name"]: "2027-03-01" for p in operation.get("parameters", []) if p["in"] == "query" and p["required"]}
    return path.format(**values) + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def example_body(operation: dict[str, Any]) -> Any:
    if "requestBody" not in operation:
        return None
    return next(iter(operation["requestBody"]["content"]["application/json"]["examples"].values()))["value"]


def call(api: TestClient[Any], name: str, /, headers: dict[str, str] | None = None, content: bytes | None = None,
         **override: str) -> Any:
    path, method, operation = OPERATIONS[name]
    body = content if content is not None else (None if example_body(operation) is None
                                                else json.dumps(example_body(operation)).encode())
    sent = {"content-type": "application/json", **(ADMIN if headers is None else headers)}
    return api.request(method.upper(), url(path, operation, **override), headers=sent, content=body)


def provoke_invalid_parameter(api: TestClient[Any], name: str) -> Any:
    """The first parameter that can be malformed: a header, a typed query parameter, a patterned path one."""
    path, method, operation = OPERATIONS[name]
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        kind = schema.get("format") or schema.get("type")
        if parameter["in"] == "header" and parameter["name"] == "X-Min-Position":
            return api.request(method.upper(), url(path, operation), headers={**ADMIN, "X-Min-Position": "nonsense"})
        if parameter["in"] == "header" and parameter["name"] == "Idempotency-Key":
            return call(api, name, headers={**ADMIN, "Idempotency-Key": 'a "quoted" key'})
        if parameter["in"] == "path" and schema.get("pattern"):
            return call(api, name, **{parameter["name"]: "nonsense"})
        if parameter["in"] == "query" and kind in BAD_VALUES:
            bad = url(path, operation) + ("&" if "?" in url(path, operation) else "?")
            return api.request(method.upper(), f"{bad}{parameter['name']}={BAD_VALUES[kind]}", headers=ADMIN)
    raise AssertionError(f"{name}: documents invalid-parameter but has no parameter this test can malform")


def cases(slug: str) -> list[str]:
    return [name for name, (_, _, op) in OPERATIONS.items() if slug in framework_problems(op)]


@pytest.mark.parametrize("name", cases("unauthenticated"))
def test_no_token_is_the_documented_401(api, name):
    assert_problem(call(api, name, headers={}), 401, "unauthenticated")


@pytest.mark.parametrize("name", cases("insufficient-scope"))
def test_a_token_without_the_scope_is_the_documented_403(api, name):
    unscoped = {"Authorization": f"Bearer {ISSUER.issue('ops-1', ['ADMIN'], scope=[])}"}
    assert_problem(call(api, name, headers=unscoped), 403, "insufficient-scope")


@pytest.mark.parametrize("name", cases("malformed-body"))
def test_a_body_that_is_not_json_is_the_documented_400(api, name):
    assert_problem(call(api, name, content=b'{"unterminated'), 400, "malformed-body")


@pytest.mark.parametrize("name", cases("invalid-input"))
def test_a_body_off_the_schema_is_the_documented_422(api, name):
    assert_problem(call(api, name, content=b'{"no_such_field": 1}'), 422, "invalid-input")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
@pytest.mark.parametrize("name", cases("unsupported-media-type"))
def test_a_body_not_declared_json_is_the_documented_415(api, name, content_type):
    path, method, operation = OPERATIONS[name]
    headers = {**ADMIN, **({"content-type": content_type} if content_type else {})}
    response = api.request(method.upper(), url(path, operation), headers=headers,
                           content=json.dumps(example_body(operation)).encode())
    assert_problem(response, 415, "unsupported-media-type")
    assert response.headers["accept"] == "application/json"


@pytest.mark.parametrize("name", cases("http-413"))
def test_a_body_over_the_limit_is_the_documented_413(api, name):
    assert_problem(call(api, name, content=b'{"text": "' + b"a" * 70_000 + b'"}'), 413, "http-413")


NOT_CANONICAL = {
    "not a uuid": lambda _: "not-a-uuid",
    "upper case": str.upper,
    "a urn": lambda text: f"urn:uuid:{text}",
    "in braces": lambda text: "{" + text + "}",
    "32 bare hex digits": lambda text: text.replace("-", ""),
}
"""Spellings of an id that Python's ``UUID()`` reads but the API's paths do not: only ``str(uuid)`` names one."""


@pytest.mark.parametrize("spelling", NOT_CANONICAL)
@pytest.mark.parametrize("name", cases("http-404"))
def test_a_path_id_that_is_not_a_canonical_uuid_is_the_documented_404(api, name, spelling):
    _, _, operation = OPERATIONS[name]
    ids = {p["name"]: NOT_CANONICAL[spelling](str(uuid.uuid4())) for p in operation["parameters"]
           if p["in"] == "path" and p["schema"].get("format") == "uuid"}
    assert_problem(call(api, name, **ids), 404, "http-404")


@pytest.mark.parametrize("name", cases("invalid-parameter"))
def test_a_malformed_parameter_is_the_documented_400(api, name):
    assert_problem(provoke_invalid_parameter(api, name), 400, "invalid-parameter")


@pytest.mark.parametrize("name", [name for name, slugs in OUTCOMES.items() if "not-found" in slugs])
def test_an_unknown_id_is_the_documented_404(api, name):
    assert_problem(call(api, name), 404, "not-found")


@pytest.mark.parametrize("name", sorted(DEPRECATIONS))
def test_a_deprecated_operation_past_its_sunset_is_the_documented_410(name):
    clinic = bootstrap(Settings(persistence="memory"))
    after_sunset = DEPRECATIONS[name].sunset.replace(year=DEPRECATIONS[name].sunset.year + 1)
    try:
        with TestClient(create_app(clinic, ISSUER.verifier(), clock=lambda: after_sunset)) as api:
            assert "gone" in framework_problems(OPERATIONS[name][2])
            assert_problem(call(api, name), 410, "gone")
    finally:
        clinic.close()


def test_forbidden_is_documented_exactly_where_the_matrix_refuses_someone():
    refuses = {name for name, row in MATRIX.items() if REQUIRED_SCOPE[name] and set(PERSONAS) - set(row.allowed)}
    assert {name for name, slugs in OUTCOMES.items() if "forbidden" in slugs} == refuses


def book_saga_of(clinic: Any, consultation_id: str) -> str:
    from process_managers.booking_saga import saga_id_for
    return str(saga_id_for(uuid.UUID(consultation_id)))


def test_every_conflict_and_query_outcome_happens_as_documented():
    """One story provokes each remaining outcome of ``OUTCOMES``; none is left unproven but the racy ones."""
    clinic = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05))
    provoked: set[tuple[str, str]] = set()

    def expect(name: str, response: Any, slug: str) -> None:
        status = PROBLEM_TYPES[slug][0]
        documented = OPERATIONS[name][2]["responses"][str(status)]["content"]["application/problem+json"]["examples"]
        assert slug in documented
        assert_problem(response, status, slug)
        provoked.add((name, slug))

    try:
        with TestClient(create_app(clinic, ISSUER.verifier())) as api:
            doctor, patient = register_doctor(api, ADMIN), register_patient(api, ADMIN)
            open_slot(api, ADMIN, doctor)
            slots = {"slots": [{"start": START, "duration_minutes": 30}]}
            expect("openSlots", api.post(f"/v1/doctors/{doctor}/slots", json=slots, headers=ADMIN),
                   "slot-already-open")
            consultation = book(api, ADMIN, patient, doctor).json()["consultation_id"]
            clinic.wait_until_settled()
            booked_slot = api.get(f"/v1/doctors/{doctor}/slots?date={START[:10]}", headers=ADMIN).json()["slots"][0]
            expect("closeSlot", api.post(f"/v1/doctors/{doctor}/slots/{booked_slot['slot_id']}/close", headers=ADMIN),
                   "slot-in-use")
            cancel = f"/v1/consultations/{consultation}/cancel"
            expect("cancelConsultation", api.post(cancel, json={"reason": "x"}, headers={**ADMIN, "If-Match": '"99"'}),
                   "version-conflict")
            reschedule = f"/v1/consultations/{consultation}/reschedule"
            expect("rescheduleConsultation", api.post(reschedule, json={"start": START},
                                                      headers={**ADMIN, "If-Match": '"99"'}), "version-conflict")
            assert api.post(cancel, json={"reason": "cannot come"}, headers=ADMIN).status_code == 200
            expect("rescheduleConsultation", api.post(reschedule, json={"start": "2027-01-05T10:00:00Z"},
                                                      headers=ADMIN), "invalid-state")
            expect("cancelConsultation", api.post(cancel, json={"reason": "again"}, headers=ADMIN), "invalid-state")
            expect("addClinicalNote", api.post(f"/v1/consultations/{consultation}/notes", json={"text": "late"},
                                               headers=ADMIN), "invalid-state")
            for name, ending in (("completeConsultation", "complete"), ("markConsultationNoShow", "no-show")):
                expect(name, api.post(f"/v1/consultations/{consultation}/{ending}", headers=ADMIN), "invalid-state")
            audit = f"/v1/audit/consultation/{consultation}?version=1&as_of=2027-01-01T00:00:00Z"
            expect("auditAggregate", api.get(audit, headers=ADMIN), "invalid-query")
            ended = book_saga_of(clinic, consultation)
            for name, action in (("retrySagaValidation", "retry-validation"), ("compensateSaga", "compensate")):
                expect(name, api.post(f"/v1/sagas/{ended}/{action}", headers=ADMIN), "invalid-state")
            webhook = {"url": "http://hooks.example.org/clinic", "events": ["consultation.confirmed"]}
            expect("createWebhook", api.post("/v1/webhooks", json=webhook, headers=ADMIN), "invalid-webhook")
            for number in range(MAX_SUBSCRIPTIONS_PER_OWNER):
                api.post("/v1/webhooks", json={**webhook, "url": f"https://hooks.example.org/{number}"}, headers=ADMIN)
            expect("createWebhook", api.post("/v1/webhooks", json={**webhook, "url": "https://hooks.example.org/x"},
                                             headers=ADMIN), "too-many-webhooks")
    finally:
        clinic.close()
    other = {(name, slug) for name, slugs in OUTCOMES.items() for slug in slugs if slug not in ("forbidden", "not-found")}
    assert provoked | CONCURRENT_ONLY == other



def test_every_operation_answers_the_documented_503_when_its_stores_are_out(
        private_postgres: PrivatePostgres, private_redis: PrivateRedis, tmp_path: Path):  # noqa: F811 - fixtures
    settings = Settings(persistence="postgres", database=private_postgres.env, redis_url=private_redis.url,
                        data_dir=tmp_path, runner_tick_seconds=0.05)
    migrate(settings)
    clinic = bootstrap(settings)
    try:
        with TestClient(create_app(clinic, ISSUER.verifier())) as api:
            # given the event store and the read models' Redis both out
            private_postgres.stop()
            private_redis.stop()
            # when every operation is called as an admin, then each is the documented 503, never a 500
            answers = {name: call(api, name) for name, (_, _, op) in OPERATIONS.items()
                       if "unavailable" in framework_problems(op)}
    finally:
        clinic.close()
    seen = {name: (r.status_code, r.json().get("type"), r.headers.get("retry-after")) for name, r in answers.items()}
    unavailable = (503, "urn:clinic:problem:unavailable", str(RETRY_AFTER_SECONDS))
    assert seen == dict.fromkeys(answers, unavailable)
