"""Hardening: security headers on every response, a request-size limit, no token in the logs."""

from __future__ import annotations

import logging

import pytest

from interfaces.http.middleware import SECURITY_HEADERS
from tests.e2e.conftest import assert_problem

REQUESTS = {
    "an answer": ("GET", "/health/live", False),
    "a 401": ("GET", "/v1/sagas/00000000-0000-0000-0000-000000000000", False),
    "a 404 from routing": ("GET", "/v1/nothing-here", True),
    "a 422": ("POST", "/v1/patients", True),
}


@pytest.mark.parametrize("kind", REQUESTS)
def test_every_response_carries_the_security_headers(api, admin, kind):
    method, path, authenticated = REQUESTS[kind]
    response = api.request(method, path, headers=admin if authenticated else {}, json={} if method == "POST" else None)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name


def test_the_openapi_pages_have_no_content_security_policy_but_the_other_headers(api):
    response = api.get("/schema/openapi.json")
    assert response.status_code == 200
    assert "content-security-policy" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_body_over_the_limit_is_a_413_problem_and_nothing_is_recorded(api, admin, clinic):
    before = clinic.registry.recorder.max_notification_id() or 0
    body = {"name": "A" * 70_000, "email": "a@example.org", "birth_date": "1990-01-01", "consent": True}
    response = api.post("/v1/patients", json=body, headers=admin)
    assert_problem(response, 413)
    assert (clinic.registry.recorder.max_notification_id() or 0) == before


def test_a_bearer_token_never_reaches_the_logs(api, issuer, caplog):
    caplog.set_level(logging.DEBUG)
    refused = issuer.issue("p-1", ["PATIENT"], ttl_seconds=-3600)  # expired: logged as a refusal, if at all
    accepted = issuer.issue("ops-1", ["ADMIN"])
    for token in (refused, accepted):
        api.get("/v1/patients/00000000-0000-0000-0000-000000000000", headers={"Authorization": f"Bearer {token}"})
    assert caplog.records, "the requests were logged"
    for token in (refused, accepted):
        assert token.split(".")[2] not in caplog.text
