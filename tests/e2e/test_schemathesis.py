"""Schemathesis against the OpenAPI document, with valid tokens: no server error, no undocumented status.

Runs in process against the ASGI app (the same routes the committed ``specs/openapi.json``
describes: ``test_openapi_drift.py`` keeps them equal). Hypothesis generates schema-valid
requests for every operation and calls them as an admin (who passes every ownership rule, so
the deepest paths run) and as a patient (whose refusals must be documented 403s too).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from joserfc.jwk import ECKey
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from application.bootstrap import bootstrap
from application.settings import Settings
from infrastructure.security.tokens import TokenIssuer
from interfaces.http.app import create_app

ISSUER = TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), "clinic-dev", "clinic-api")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


CLINIC = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05))
schema = schemathesis.openapi.from_asgi("/schema/openapi.json", create_app(CLINIC, ISSUER.verifier()))
"""Built at collection (schemathesis parametrizes from it; its lazy fixture loader fails on pytest 9)."""


@pytest.fixture(scope="module", autouse=True)
def _close_the_clinic() -> Iterator[None]:
    yield
    CLINIC.close()


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_as_an_admin_no_server_error_and_no_undocumented_status(case):
    case.call_and_validate(headers={"Authorization": f"Bearer {ISSUER.issue('ops-1', ['ADMIN'])}"}, checks=CHECKS)


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_as_a_patient_refusals_are_documented_too(case):
    token = ISSUER.issue("9d3a4c57-7a3e-4a53-9f65-2b1f5d6c8e01", ["PATIENT"])
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
