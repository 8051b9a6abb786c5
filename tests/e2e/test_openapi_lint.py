"""specs/openapi.json is linted (redocly, zero problems) and every operation documents itself fully.

Two independent guards: ``redocly lint`` with the rules of ``redocly.yaml`` (examples validated
against their schemas, problem+json errors, summaries, tags, security...), and checks in Python
that fail on their own if redocly is missing or its rules change: every operation has a summary,
a description, one defined tag, examples of its request body and success responses, and the
error responses ``interfaces/http/openapi.py`` says it can answer, each with an example per
problem type. Examples are also decoded strictly as the structs the API itself decodes.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from interfaces.http import problems
from interfaces.http.authorization import REQUIRED_SCOPE
from interfaces.http.examples import EXAMPLES
from interfaces.http.openapi import OUTCOMES, PROBLEM_TYPES, problems_of
from interfaces.http.schemas import Problem
from tests.services import require_tool

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / "specs" / "openapi.json"
SPEC = json.loads(SPEC_PATH.read_text())
IGNORED = {"#/paths/~1health~1live/get/responses", "#/paths/~1health~1ready/get/responses"}
"""The only findings .redocly.lint-ignore.yaml may hide: the probes answer no 4xx."""


def operations(spec: dict[str, Any] = SPEC) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]


def ids(spec: dict[str, Any] = SPEC) -> list[str]:
    return [op["operationId"] for _, _, op in operations(spec)]


def redocly_lint(document: Path) -> dict[str, Any]:
    redocly = require_tool("redocly", "install the npm validators: npm ci --prefix tools")
    result = subprocess.run([redocly, "lint", str(document), "--format=json", f"--config={REPO / 'redocly.yaml'}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    start = result.stdout.find("{")
    assert start >= 0, f"redocly printed no JSON report (exit {result.returncode}): {result.stderr[-2000:]}"
    return json.JSONDecoder().raw_decode(result.stdout[start:])[0]


def test_redocly_finds_no_problem_in_the_committed_document():
    report = redocly_lint(SPEC_PATH)
    found = [(p["ruleId"], p["severity"], p["location"][0]["pointer"], p["message"]) for p in report["problems"]]
    assert found == [], "\n".join(map(str, found))
    assert report["totals"] == {"errors": 0, "warnings": 0, "ignored": len(IGNORED)}


def test_the_lint_ignore_file_hides_only_the_probes_missing_4xx():
    ignored = yaml.safe_load((REPO / ".redocly.lint-ignore.yaml").read_text())
    assert ignored == {"specs/openapi.json": {"operation-4xx-response": sorted(IGNORED)}}
    for pointer in IGNORED:
        path = pointer.split("/")[2].replace("~1", "/")
        assert not any(code.startswith("4") for code in SPEC["paths"][path]["get"]["responses"])


def test_redocly_fails_a_document_with_a_bad_example_or_a_missing_error(tmp_path):
    broken = json.loads(SPEC_PATH.read_text())
    book = broken["paths"]["/v1/consultations"]["post"]
    book["requestBody"]["content"]["application/json"]["examples"]["bookConsultation"]["value"]["start"] = 7
    cancel = broken["paths"]["/v1/consultations/{consultation_id}/cancel"]["post"]
    cancel["responses"] = {code: r for code, r in cancel["responses"].items() if not code.startswith("4")}
    del broken["paths"]["/v1/doctors"]["post"]["summary"]
    copy = tmp_path / "specs" / "openapi.json"
    copy.parent.mkdir()
    copy.write_text(json.dumps(broken))
    rules = {p["ruleId"] for p in redocly_lint(copy)["problems"]}
    assert {"no-invalid-media-type-examples", "operation-4xx-response", "operation-summary"} <= rules


@pytest.mark.parametrize(("path", "method", "operation"), operations(), ids=ids())
def test_every_operation_is_summarised_described_and_tagged(path, method, operation):
    assert len(operation["summary"].split()) >= 2, "a summary of its own, not Litestar's handler name"
    assert operation["description"].strip()
    assert len(operation["tags"]) == 1 and operation["tags"][0] in {t["name"] for t in SPEC["tags"]}


@pytest.mark.parametrize(("path", "method", "operation"), operations(), ids=ids())
def test_every_body_and_success_response_has_an_example(path, method, operation):
    holders = [operation.get("requestBody", {})] + [r for code, r in operation["responses"].items()
                                                     if code.startswith(("2", "5"))]
    for holder in holders:
        for media_type, media in holder.get("content", {}).items():
            assert media.get("examples"), f"{operation['operationId']}: {media_type} has no example"


@pytest.mark.parametrize(("path", "method", "operation"), operations(), ids=ids())
def test_every_operation_documents_its_errors_as_problems_with_examples(path, method, operation):
    documented = {code: r for code, r in operation["responses"].items()
                  if code.startswith("4") or (code == "503" and "health" not in operation["tags"])}
    expected = {str(PROBLEM_TYPES[slug][0]) for slug in problems_of(operation)}
    assert set(documented) == expected
    if REQUIRED_SCOPE[operation["operationId"]]:
        assert {"401", "403", "503"} <= set(documented)
        assert documented["503"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
    if "requestBody" in operation:
        assert {"400", "413", "422"} <= set(documented)
    for code, response in documented.items():
        assert list(response["content"]) == [problems.PROBLEM_JSON], code
        examples = response["content"][problems.PROBLEM_JSON]["examples"]
        assert examples, code
        for example in examples.values():
            assert example["value"]["status"] == int(code)
            assert example["value"]["type"].removeprefix(problems.PROBLEM_BASE) in PROBLEM_TYPES
        assert "X-Correlation-Id" in response["headers"]


def test_every_operation_has_a_row_of_outcomes_beside_its_scope():
    assert set(ids()) == set(OUTCOMES) == set(REQUIRED_SCOPE)
    assert all(slug in PROBLEM_TYPES for slugs in OUTCOMES.values() for slug in slugs)


def test_the_problem_types_are_the_ones_problems_py_writes():
    for status, slug, title in [*problems.PROBLEMS.values(), problems.UNAVAILABLE]:
        assert PROBLEM_TYPES[slug][:2] == (status, title), slug


@pytest.mark.parametrize("schema", list(EXAMPLES), ids=lambda cls: cls.__name__)
def test_every_example_decodes_strictly_as_its_struct(schema):
    msgspec.json.decode(json.dumps(EXAMPLES[schema]).encode(), type=schema, strict=True)


def test_every_example_in_the_document_decodes_as_its_schema():
    structs = {cls.__name__: cls for cls in [*EXAMPLES, Problem]}
    checked = 0
    for _, _, operation in operations():
        holders = [operation.get("requestBody", {}), *operation["responses"].values()]
        for media in (m for h in holders for m in h.get("content", {}).values()):
            name = media["schema"].get("$ref", "").rpartition("/")[2]
            for example in media.get("examples", {}).values():
                if name in structs:
                    msgspec.json.decode(json.dumps(example["value"]).encode(), type=structs[name], strict=True)
                    checked += 1
    assert checked > 100
