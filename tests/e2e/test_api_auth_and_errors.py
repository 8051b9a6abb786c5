"""Bearer authentication, problem+json errors, correlation ids, health and the OpenAPI document."""

from __future__ import annotations

import uuid

import pytest
from joserfc.jwk import ECKey

from infrastructure.security.tokens import TokenIssuer
from tests.e2e.conftest import assert_problem

PROTECTED = "/v1/sagas/" + str(uuid.uuid4())
BOOKING = {"patient_id": str(uuid.uuid4()), "doctor_id": str(uuid.uuid4()),
           "start": "2027-01-05T09:00:00Z", "reason": "check-up"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def other_key() -> ECKey:
    return ECKey.generate_key("P-256", auto_kid=True)


# 401 -------------------------------------------------------------------------


BAD_TOKENS = {
    "garbage": lambda issuer: "not.a.jwt",
    "expired": lambda issuer: issuer.issue("ops-1", ["ADMIN"], ttl_seconds=-3600),
    "signed by another key": lambda issuer: TokenIssuer(other_key(), "clinic-dev", "clinic-api").issue(
        "ops-1", ["ADMIN"]),
    "wrong aud": lambda issuer: TokenIssuer(issuer.key, "clinic-dev", "other-api").issue("ops-1", ["ADMIN"]),
    "wrong iss": lambda issuer: TokenIssuer(issuer.key, "someone-else", "clinic-api").issue("ops-1", ["ADMIN"]),
}


@pytest.mark.parametrize("kind", BAD_TOKENS)
def test_a_bad_token_is_401(api, issuer, kind):
    response = api.get(PROTECTED, headers=bearer(BAD_TOKENS[kind](issuer)))
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic b3BzOnB3"}],
                         ids=["no header", "empty bearer", "basic"])
def test_no_bearer_token_is_401(api, headers):
    response = api.get(PROTECTED, headers=headers)
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_valid_token_passes_authentication(api, admin):
    # an admin asking for an unknown saga gets past 401 and 403 to 404
    assert_problem(api.get(PROTECTED, headers=admin), 404, "not-found")


def test_an_authenticated_caller_without_the_scope_is_403_naming_it(api, token):
    response = api.get(PROTECTED, headers=token("p-1", "PATIENT"))
    assert_problem(response, 403, "insufficient-scope")
    assert 'error="insufficient_scope", scope="sagas:read"' in response.headers["www-authenticate"]


def test_a_token_with_the_scope_but_without_the_role_is_403(api, issuer):
    token = issuer.issue("p-1", ["PATIENT"], scope=["sagas:read"])
    assert_problem(api.get(PROTECTED, headers=bearer(token)), 403, "forbidden")


def test_a_token_without_roles_is_403_not_401(api, token):
    assert_problem(api.get(PROTECTED, headers=token("nobody")), 403, "insufficient-scope")


# Bodies ----------------------------------------------------------------------


def test_malformed_json_is_400(api, admin):
    response = api.post("/v1/consultations", content=b'{"patient_id": ', headers=admin | {
        "Content-Type": "application/json"})
    assert_problem(response, 400, "malformed-body")


def test_an_unknown_body_field_is_422(api, admin):
    response = api.post("/v1/consultations", json=BOOKING | {"urgent": True}, headers=admin)
    assert_problem(response, 422, "invalid-input")


@pytest.mark.parametrize("start", [0, "2027-01-05T09:00:00"], ids=["number", "naive"])
def test_a_start_that_is_not_an_aware_datetime_is_422_naming_start(api, admin, start):
    response = api.post("/v1/consultations", json=BOOKING | {"start": start}, headers=admin)
    problem = assert_problem(response, 422, "invalid-input")
    assert problem["errors"][0]["field"] == "$.start"


def test_a_patient_id_that_is_not_a_uuid_is_422_naming_it(api, admin):
    response = api.post("/v1/consultations", json=BOOKING | {"patient_id": "p-1"}, headers=admin)
    assert assert_problem(response, 422)["errors"][0]["field"] == "$.patient_id"


def test_a_missing_field_is_422(api, admin):
    body = {k: v for k, v in BOOKING.items() if k != "reason"}
    assert_problem(api.post("/v1/consultations", json=body, headers=admin), 422, "invalid-input")


def test_an_id_that_is_not_a_uuid_in_the_path_is_a_404_problem(api, admin):
    assert_problem(api.get("/v1/consultations/not-a-uuid", headers=admin), 404)


def test_a_problem_names_the_request_path_as_its_instance(api, admin):
    path = f"/v1/consultations/{uuid.uuid4()}"
    assert assert_problem(api.get(path, headers=admin), 404)["instance"] == path


# Correlation ids -------------------------------------------------------------


def test_a_given_correlation_id_is_echoed_on_success(api, admin):
    response = api.post("/v1/doctors", json={"name": "Dr", "specialty": "gp"},
                        headers=admin | {"X-Correlation-Id": "corr-201"})
    assert response.status_code == 201
    assert response.headers["x-correlation-id"] == "corr-201"


def test_a_correlation_id_is_generated_when_absent(api, admin):
    response = api.post("/v1/doctors", json={"name": "Dr", "specialty": "gp"}, headers=admin)
    assert uuid.UUID(response.headers["x-correlation-id"])


def test_an_unusable_correlation_id_is_replaced_by_a_generated_one(api, admin):
    response = api.get(PROTECTED, headers=admin | {"X-Correlation-Id": "no spaces allowed!"})
    assert uuid.UUID(response.headers["x-correlation-id"])


def test_the_correlation_id_is_echoed_on_404_and_named_in_the_problem(api, admin):
    response = api.get(f"/v1/consultations/{uuid.uuid4()}", headers=admin | {"X-Correlation-Id": "corr-404"})
    assert assert_problem(response, 404)["correlation_id"] == "corr-404"
    assert response.headers["x-correlation-id"] == "corr-404"


def test_the_correlation_id_is_echoed_on_403(api, token):
    response = api.get(PROTECTED, headers=token("p-1", "PATIENT") | {"X-Correlation-Id": "corr-403"})
    assert_problem(response, 403)
    assert response.headers["x-correlation-id"] == "corr-403"


def test_the_correlation_id_is_echoed_on_422(api, admin):
    response = api.post("/v1/consultations", json=BOOKING | {"start": 0},
                        headers=admin | {"X-Correlation-Id": "corr-422"})
    assert_problem(response, 422)
    assert response.headers["x-correlation-id"] == "corr-422"


def test_the_correlation_id_is_echoed_on_401(api):
    response = api.get(PROTECTED, headers={"X-Correlation-Id": "corr-401"})
    assert assert_problem(response, 401)["correlation_id"] == "corr-401"
    assert response.headers["x-correlation-id"] == "corr-401"


def test_the_correlation_id_is_generated_on_401(api):
    assert uuid.UUID(api.get(PROTECTED).headers["x-correlation-id"])


def test_the_correlation_id_is_echoed_on_404_for_an_unknown_route(api, admin):
    response = api.get("/v1/nowhere", headers=admin | {"X-Correlation-Id": "corr-route"})
    assert_problem(response, 404)
    assert response.headers["x-correlation-id"] == "corr-route"


def test_the_correlation_id_is_echoed_by_public_endpoints(api):
    assert api.get("/health/live", headers={"X-Correlation-Id": "corr-live"}).headers["x-correlation-id"] == "corr-live"


# Public endpoints ------------------------------------------------------------


def test_liveness_needs_no_token(api):
    response = api.get("/health/live")
    assert (response.status_code, response.json()["status"]) == (200, "ok")


def test_readiness_needs_no_token_and_reports_every_check(api):
    response = api.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] and all(body["checks"].values())
    assert body["checks"]["runner"] is True


def test_readiness_is_503_once_the_clinic_is_closed(api, clinic):
    clinic.close()
    response = api.get("/health/ready")
    assert (response.status_code, response.json()["status"]) == (503, "unavailable")


def test_the_openapi_document_needs_no_token(api):
    response = api.get("/schema/openapi.json")
    assert response.status_code == 200
    assert "/v1/consultations" in response.json()["paths"]
