"""The PromQL docs/deprecation.md gives operators ("who still calls v1") answers right (promtool, offline)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.services import require_tool

DOCS = Path(__file__).resolve().parents[3] / "docs" / "deprecation.md"
V1_ROUTE = "/v1/consultations/{consultation_id}"
V2_ROUTE = "/v2/consultations/{consultation_id}"
HOURS = 800
SERIES = [  # one sample an hour for 800 h
    ('clinic_deprecated_api_requests_total{service="consultations",operation="getConsultation",'
     'client_id="front-desk"}', f"0+6x{HOURS}"),  # still calling, 6 an hour
    ('clinic_deprecated_api_requests_total{service="consultations",operation="getConsultation",'
     'client_id="patient-app"}', f"0+5x50 250+0x{HOURS - 51}"),  # migrated after 50 h
    (f'clinic_http_requests_total{{service="consultations",method="GET",route="{V1_ROUTE}",status="200"}}',
     f"0+6x{HOURS}"),
    (f'clinic_http_requests_total{{service="consultations",method="GET",route="{V2_ROUTE}",status="200"}}',
     f"0+2x{HOURS}"),
]


def documented_queries() -> dict[str, str]:
    """Each query of the page's promql block, by the first words of the comment above it."""
    block = re.search(r"```promql\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert block is not None, "docs/deprecation.md lost its PromQL block"
    queries = {}
    for chunk in block.group(1).strip().split("\n\n"):
        comment, *lines = chunk.strip().splitlines()
        queries[" ".join(comment.lstrip("# ").split()[:3])] = "\n".join(lines)
    return queries


EXPECTED = {
    "Who still calls": [({"client_id": "front-desk"}, 6 * 24 * 7)],
    "Share of reads": [({}, 0.75)],
    "After the sunset:": [({"client_id": "front-desk"}, 6 * 24)],
    "Removal gate: no": [({}, 6 * 24 * 30)],
}


def test_the_page_documents_the_queries_this_test_checks():
    assert set(documented_queries()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_query_answers_right(tmp_path, name):
    promtool = require_tool("promtool", "apt-get install -y prometheus")
    expected = [{"labels": "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "{}",
                 "value": value} for labels, value in EXPECTED[name]]
    test = {"rule_files": [], "evaluation_interval": "1h", "tests": [{
        "interval": "1h",
        "input_series": [{"series": series, "values": values} for series, values in SERIES],
        "promql_expr_test": [{"expr": documented_queries()[name], "eval_time": f"{HOURS}h", "exp_samples": expected}],
    }]}
    path = tmp_path / "queries-test.yml"
    path.write_text(json.dumps(test))  # JSON is YAML
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
