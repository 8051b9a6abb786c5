"""``openapi.complete``: how an operation Litestar generated is finished, whatever endpoint it is.

A new endpoint gets its error responses and examples from the mechanism, not from its author:
these tests feed ``complete`` a document as Litestar writes it and check what comes out.
"""

from __future__ import annotations

import copy
from typing import Any

from interfaces.http.openapi import PROBLEM_TYPES, complete

PROBLEM = "application/problem+json"


def generated(operation_id: str, **extra: Any) -> dict[str, Any]:
    """One POST as Litestar generates it: a UUID in the path, a body, its default 400 guess."""
    operation = {
        "operationId": operation_id, "summary": "Cancel a consultation",
        "parameters": [{"name": "consultation_id", "in": "path", "required": True,
                        "schema": {"type": "string", "format": "uuid"}}],
        "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/CancelConsultation"}}}},
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ConsultationCancelled"}}}},
            "400": {"description": "Bad request syntax", "content": {"application/json": {"schema": {"type": "object"}}}},
        },
        **extra,
    }
    return {"paths": {"/v1/consultations/{consultation_id}/cancel": {"post": operation}}, "components": {"schemas": {}}}


def only_operation(document: dict[str, Any]) -> dict[str, Any]:
    return document["paths"]["/v1/consultations/{consultation_id}/cancel"]["post"]


def test_a_scoped_operation_with_a_body_and_an_id_gets_every_error_its_kind_can_answer():
    operation = only_operation(complete(generated("cancelConsultation")))
    assert set(operation["responses"]) == {"200", "400", "401", "403", "404", "409", "413", "415", "422", "503"}
    for code, response in operation["responses"].items():
        assert "X-Correlation-Id" in response["headers"]
        if code.startswith("4"):
            assert list(response["content"]) == [PROBLEM]
            assert all(e["value"]["status"] == int(code) for e in response["content"][PROBLEM]["examples"].values())
    assert set(operation["responses"]["409"]["content"][PROBLEM]["examples"]) == {"invalid-state", "version-conflict"}
    assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    assert operation["responses"]["415"]["headers"]["Accept"]["schema"]["enum"] == ["application/json"]


def test_litestars_default_400_is_replaced_and_examples_come_from_the_structs():
    operation = only_operation(complete(generated("cancelConsultation")))
    assert list(operation["responses"]["400"]["content"]) == [PROBLEM]
    assert operation["requestBody"]["content"]["application/json"]["examples"]["cancelConsultation"]["value"] == {
        "reason": "cannot come"}
    assert "consultationCancelled" in operation["responses"]["200"]["content"]["application/json"]["examples"]
    assert operation["parameters"][0]["description"]


def test_an_operation_without_an_outcomes_row_still_gets_what_its_kind_answers():
    operation = only_operation(complete(generated("someNewOperation")))
    assert set(operation["responses"]) == {"200", "400", "404", "413", "415", "422", "503"}  # unscoped: no 401/403


def test_a_4xx_the_handler_declared_is_kept_and_given_examples():
    declared = {"description": "Gone", "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    document = generated("someNewOperation")
    only_operation(document)["responses"]["410"] = declared
    examples = only_operation(complete(document))["responses"]["410"]["content"][PROBLEM]["examples"]
    assert set(examples) == {slug for slug, (status, _, _) in PROBLEM_TYPES.items() if status == 410}


def test_the_input_is_not_changed_and_the_problem_schema_is_added():
    document = generated("cancelConsultation")
    before = copy.deepcopy(document)
    completed = complete(document)
    assert document == before
    assert completed["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status"]


def test_a_request_body_schema_says_it_refuses_unknown_fields_and_a_response_schema_does_not():
    document = generated("cancelConsultation")
    document["components"]["schemas"] = {name: {"type": "object", "properties": {}}
                                         for name in ("CancelConsultation", "ConsultationCancelled")}
    schemas = complete(document)["components"]["schemas"]
    assert schemas["CancelConsultation"]["additionalProperties"] is False
    assert "additionalProperties" not in schemas["ConsultationCancelled"]
