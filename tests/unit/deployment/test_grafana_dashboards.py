"""The Grafana dashboards of deployment/grafana: their shape, their layout, and PromQL that parses.

promtool has no offline "parse this query" command, so every dashboard query (Grafana's variables
put in place) becomes a recording rule of a temporary file that ``promtool check rules`` parses.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests import services
from tests.unit.deployment import observability_files as files

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
EXPECTED = {"clinic-services.json", "clinic-messaging-sagas.json", "clinic-read-side.json"}
BOARDS = pytest.mark.parametrize("path", files.DASHBOARDS, ids=lambda path: path.stem)


@pytest.fixture(scope="module")
def promtool() -> str:
    return services.require_binary("promtool")


def check_rules(promtool: str, exprs: list[str], tmp_path) -> subprocess.CompletedProcess:
    """``promtool check rules`` on ``exprs`` wrapped as recording rules."""
    rules = [{"record": f"dashboard:query_{i}:parse", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}))
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60,
                          check=False)


def test_the_three_dashboards_exist_and_are_what_build_py_writes():
    assert {path.name for path in files.DASHBOARDS} == EXPECTED
    result = subprocess.run([sys.executable, str(files.GRAFANA / "build.py"), "--check"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


@BOARDS
def test_dashboard_has_schema_uid_datasource_and_service_variables(path):
    board = files.dashboard(path)
    assert board["schemaVersion"] >= 38
    assert board["uid"] == path.stem and board["title"]
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert (variables["DS_PROMETHEUS"]["type"], variables["DS_PROMETHEUS"]["query"]) == ("datasource", "prometheus")
    service = variables["service"]
    assert service["datasource"] == DATASOURCE
    assert service["query"]["query"] == "label_values(clinic_http_requests_total, service)"
    assert service["includeAll"] and service["multi"] and service["allValue"] == ".*"


@BOARDS
def test_every_panel_queries_the_datasource_variable_filtered_by_service(path):
    board = files.dashboard(path)
    shown = list(files.panels(board))
    assert shown
    for item in shown:
        assert item["datasource"] == DATASOURCE, item["title"]
        assert item["targets"], item["title"]
        refs = [query["refId"] for query in item["targets"]]
        assert len(set(refs)) == len(refs), item["title"]
        for query in item["targets"]:
            assert query["datasource"] == DATASOURCE and query["expr"], item["title"]
            assert 'service=~"$service"' in query["expr"], (item["title"], query["expr"])


@BOARDS
def test_panels_have_unique_ids_and_do_not_overlap(path):
    board = files.dashboard(path)
    ids = [item["id"] for item in board["panels"]]
    assert len(set(ids)) == len(ids)
    cells: dict[tuple[int, int], str] = {}
    for item in board["panels"]:
        grid = item["gridPos"]
        assert grid["x"] + grid["w"] <= 24, item["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{item['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = item["title"]


def test_breaker_state_timeline_names_the_three_states():
    board = files.dashboard(files.GRAFANA / "dashboards" / "clinic-messaging-sagas.json")
    timeline = next(item for item in files.panels(board) if item["type"] == "state-timeline")
    options = timeline["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {value: option["text"] for value, option in options.items()} == {
        "0": "closed", "1": "half-open", "2": "open"}


def test_every_dashboard_query_parses(promtool, tmp_path):
    exprs = [files.as_promql(expr) for path in files.DASHBOARDS
             for expr in files.dashboard_expressions(files.dashboard(path))]
    assert all("$" not in expr for expr in exprs), [expr for expr in exprs if "$" in expr]
    result = check_rules(promtool, exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_the_parse_check_rejects_a_broken_query(promtool, tmp_path):
    result = check_rules(promtool, ["sum by (service (rate(clinic_http_requests_total[5m]))"], tmp_path)
    assert result.returncode != 0


def test_provisioning_loads_the_dashboards_folder_from_a_prometheus_datasource():
    provider = yaml.safe_load((files.GRAFANA / "provisioning" / "dashboards" / "clinic.yml").read_text())
    [clinic] = provider["providers"]
    assert clinic["type"] == "file" and clinic["options"]["path"].endswith("/dashboards/clinic")
    datasources = yaml.safe_load((files.GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    [prometheus] = datasources["datasources"]
    assert (prometheus["type"], prometheus["isDefault"]) == ("prometheus", True)
