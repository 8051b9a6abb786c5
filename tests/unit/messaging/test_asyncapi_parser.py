"""The AsyncAPI reference parser (@asyncapi/parser) and redocly accept specs/asyncapi.yaml with no finding.

``scripts/validate-asyncapi.mjs`` runs the parser's validation: the AsyncAPI 2.6 schema,
references, the spectral AsyncAPI ruleset, and every message example against its payload and
headers schemas. It exits 1 on any error; this test also refuses warnings, and shows the
script does fail a document with an invalid example. redocly (``redocly.yaml``, its AsyncAPI 2
rules) adds what the parser lets pass: unknown keys in a schema (a comma in a flow-style
description once split it into two keys), operations without security, ``$ref`` siblings.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.services import require_tool, services_required

REPO = Path(__file__).resolve().parents[3]
SPEC = REPO / "specs" / "asyncapi.yaml"
HOW = "install Node.js (apt-get install -y nodejs) and the npm validators: npm ci --prefix tools"


def parse(document: Path) -> tuple[int, dict[str, Any]]:
    node = require_tool("node", HOW)
    if not (REPO / "tools" / "node_modules" / "@asyncapi" / "parser").is_dir():
        message = f"@asyncapi/parser is not installed; {HOW}"
        if services_required():
            pytest.fail(message + " (CLINIC_REQUIRE_SERVICES is set)")
        pytest.skip(message)
    result = subprocess.run([node, str(REPO / "scripts" / "validate-asyncapi.mjs"), str(document)], cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.stdout.strip(), f"no report (exit {result.returncode}): {result.stderr[-2000:]}"
    return result.returncode, json.loads(result.stdout)


def test_the_parser_finds_no_error_and_no_warning():
    status, report = parse(SPEC)
    assert (status, report["errors"], report["warnings"]) == (0, [], [])


def test_the_parser_fails_an_invalid_example(tmp_path):
    text = SPEC.read_text()
    assert "        reader: ops-1\n" in text
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(text.replace("        reader: ops-1\n", "        reader: 7\n", 1))
    status, report = parse(broken)
    assert status == 1
    assert [e["code"] for e in report["errors"]] == ["asyncapi2-message-examples"]
    assert report["errors"][0]["path"].startswith("components.messages.PatientRecordAccess.Read.examples")


def test_redocly_finds_no_problem_either():
    redocly = require_tool("redocly", HOW)
    result = subprocess.run([redocly, "lint", str(SPEC), "--format=json", f"--config={REPO / 'redocly.yaml'}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    report = json.JSONDecoder().raw_decode(result.stdout[result.stdout.index("{"):])[0]
    found = [(p["ruleId"], p["location"][0]["pointer"], p["message"]) for p in report["problems"]]
    assert found == [], "\n".join(map(str, found))
    assert report["totals"] == {"errors": 0, "warnings": 0, "ignored": 0}

