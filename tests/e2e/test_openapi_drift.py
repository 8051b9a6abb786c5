"""The committed OpenAPI document is the contract: code and spec must not drift."""

from __future__ import annotations

import json
from pathlib import Path

from interfaces.http.spec import openapi_document

SPEC = Path(__file__).resolve().parents[2] / "specs" / "openapi.json"


def test_generated_openapi_equals_the_committed_spec():
    committed = json.loads(SPEC.read_text())
    generated = openapi_document()
    assert generated == committed, "the API changed: review it, then run `make openapi` and commit specs/openapi.json"


def test_spec_declares_bearer_security_and_problem_responses():
    spec = json.loads(SPEC.read_text())
    assert spec["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"
    book = spec["paths"]["/v1/consultations"]["post"]
    assert {"202", "401", "403", "422"} <= set(book["responses"])
    assert "application/problem+json" in book["responses"]["401"]["content"]
    assert spec["paths"]["/health/live"]["get"]["security"] == [{}]
