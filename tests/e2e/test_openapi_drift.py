"""The committed OpenAPI document is the contract: code and spec must not drift.

Compared whole (paths, parameters, schemas, responses, examples, headers), both ways: what
``clinic openapi`` generates, what a running app serves at ``/schema/openapi.json``, and what
the distributed services serve behind the gateway (which hands out the committed file) must
all be the committed document. ``differences`` names each JSON pointer that differs, and a test
shows it catches a change in either direction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey
from litestar.testing import TestClient

from application.bootstrap import bootstrap
from application.settings import Settings
from infrastructure.security.tokens import TokenIssuer
from interfaces.http.app import create_app
from interfaces.http.contexts import SERVICE_CONTROLLERS
from interfaces.http.spec import openapi_document

SPEC = Path(__file__).resolve().parents[2] / "specs" / "openapi.json"
HOW_TO_FIX = "the API changed: review it, then run `make openapi` and commit specs/openapi.json"


def differences(expected: Any, actual: Any, pointer: str = "") -> list[str]:
    """The JSON pointers where ``actual`` differs from ``expected`` (missing, extra or changed)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = [f"{pointer}/{_escape(k)}: missing" for k in expected.keys() - actual.keys()]
        found += [f"{pointer}/{_escape(k)}: not in the committed document" for k in actual.keys() - expected.keys()]
        for key in expected.keys() & actual.keys():
            found += differences(expected[key], actual[key], f"{pointer}/{_escape(key)}")
        return sorted(found)
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [d for i, (e, a) in enumerate(zip(expected, actual, strict=True)) for d in differences(e, a, f"{pointer}/{i}")]
    if expected != actual or type(expected) is not type(actual):
        return [f"{pointer or '/'}: {json.dumps(expected)[:80]} != {json.dumps(actual)[:80]}"]
    return []


def _escape(key: str) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    return json.loads(SPEC.read_text())


@pytest.fixture(scope="module")
def clinic() -> Iterator[Any]:
    clinic = bootstrap(Settings(persistence="memory"))
    yield clinic
    clinic.close()


@pytest.fixture(scope="module")
def verifier() -> Any:
    return TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), "clinic-dev", "clinic-api").verifier()


def served(clinic: Any, verifier: Any, controllers: list[type] | None = None) -> dict[str, Any]:
    with TestClient(create_app(clinic, verifier, controllers=controllers)) as api:
        response = api.get("/schema/openapi.json")
        assert response.status_code == 200
        return response.json()


def test_generated_openapi_equals_the_committed_spec(committed):
    found = differences(committed, openapi_document())
    assert not found, HOW_TO_FIX + "\n" + "\n".join(found[:40])


def test_the_running_app_serves_the_committed_spec(committed, clinic, verifier):
    found = differences(committed, served(clinic, verifier))
    assert not found, HOW_TO_FIX + "\n" + "\n".join(found[:40])


def test_the_distributed_services_serve_exactly_the_committed_operations(committed, clinic, verifier):
    """Behind the gateway every documented operation has a service, each as documented, and no other."""
    union: dict[str, dict[str, Any]] = {}
    for service, controllers in SERVICE_CONTROLLERS.items():
        for path, item in served(clinic, verifier, controllers)["paths"].items():
            for method, operation in item.items():
                found = differences(committed["paths"].get(path, {}).get(method), operation)
                assert not found, f"{service} serves {method} {path} unlike the document:\n" + "\n".join(found[:20])
                union.setdefault(path, {})[method] = operation
    assert union == committed["paths"]


def test_differences_catch_a_change_in_either_direction(committed):
    changed = json.loads(json.dumps(committed))
    book = changed["paths"]["/v1/consultations"]["post"]
    book["responses"]["202"]["content"]["application/json"]["examples"]["bookingAccepted"]["value"]["status"] = "X"
    del book["responses"]["422"]
    changed["paths"]["/v1/undocumented"] = {"get": {}}
    found = differences(committed, changed)
    assert any("bookingAccepted/value/status" in d for d in found)
    assert "/paths/~1v1~1consultations/post/responses/422: missing" in found
    assert "/paths/~1v1~1undocumented: not in the committed document" in found
    assert differences(committed, json.loads(json.dumps(committed))) == []


def test_spec_declares_bearer_security_and_problem_responses(committed):
    assert committed["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"
    book = committed["paths"]["/v1/consultations"]["post"]
    assert {"202", "400", "401", "403", "413", "422"} <= set(book["responses"])
    assert "application/problem+json" in book["responses"]["401"]["content"]
    assert committed["paths"]["/health/live"]["get"]["security"] == [{}]
