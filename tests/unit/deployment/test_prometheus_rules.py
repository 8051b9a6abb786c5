"""The Prometheus rules and configuration of deployment/prometheus, checked and unit-tested by promtool.

promtool comes with Debian's ``prometheus`` package (``.ci/run`` installs it); without it these
tests skip loudly, or fail under CLINIC_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import services
from tests.unit.deployment import observability_files as files

SEVERITIES = {"critical", "warning"}


@pytest.fixture(scope="module")
def promtool() -> str:
    return services.require_binary("promtool")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=files.ROOT, check=False)


@pytest.mark.parametrize("path", files.RULE_FILES, ids=lambda path: path.name)
def test_rule_file_passes_promtool_check(promtool, path):
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass(promtool):
    assert files.RULE_TESTS, "no promtool unit tests in deployment/prometheus/tests"
    result = run(promtool, "test", "rules", *map(str, files.RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_fail_when_a_threshold_changes(promtool, tmp_path):
    # given the alert rules with the projection-lag threshold raised from 30 s to 60 s
    rules = []
    for path in files.RULE_FILES:
        text = path.read_text()
        if path.name == "clinic-alerts.yml":
            assert "(clinic_projection_lag_seconds) > 30" in text
            text = text.replace("(clinic_projection_lag_seconds) > 30", "(clinic_projection_lag_seconds) > 60")
        rules.append(tmp_path / path.name)
        rules[-1].write_text(text)
    tests = [test for test in files.rule_tests()
             if any(case["alertname"] == "ClinicProjectionLagHigh" for case in test.get("alert_rule_test", []))]
    unit_tests = tmp_path / "lag-test.yml"
    unit_tests.write_text(yaml.safe_dump({"rule_files": list(map(str, rules)), "evaluation_interval": "1m",
                                          "tests": tests}))
    # when that alert's unit tests run, then its firing case fails
    result = run(promtool, "test", "rules", str(unit_tests))
    assert result.returncode != 0
    assert "ClinicProjectionLagHigh" in result.stdout + result.stderr


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook_that_exists():
    anchors = files.doc_anchors(files.ALERTS_DOC.read_text())
    for rule in files.alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert rule["annotations"]["runbook_url"] == f"docs/observability-alerts.md#{name.lower()}", name
        assert name.lower() in anchors, f"docs/observability-alerts.md has no section {name}"


def test_every_alert_is_unit_tested_firing_and_quiet():
    fired, quiet = set(), set()
    for test in files.rule_tests():
        for case in test.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in files.alerts()}
    assert names - fired == set(), "alerts with no test that fires them"
    assert names - quiet == set(), "alerts with no test where they stay quiet"
    assert (fired | quiet) - names == set(), "tests of alerts that do not exist"


def test_every_recording_rule_and_every_slo_is_unit_tested():
    exprs = [case["expr"] for test in files.rule_tests() for case in test.get("promql_expr_test", [])]
    tested = {name for expr in exprs for name in files.names_in(expr)}
    assert set(files.recording_rules()) - tested == set()
    slos = {rule["labels"]["slo"] for rule in files.rules() if "slo" in rule.get("labels", {})}
    tested_slos = {slo for expr in exprs for slo in re.findall(r'slo="([^"]+)"', expr)}
    assert slos - tested_slos == set(), "SLOs whose SLI no promtool test evaluates"


def test_rules_read_only_recorded_names_that_exist():
    recorded = files.recording_rules()
    for expr in files.every_expression():
        unknown = {name for name in files.names_in(expr) if name.startswith("clinic:")} - set(recorded)
        assert not unknown, f"{expr!r} reads unrecorded {unknown}"


def test_recording_rule_names_are_level_metric_operations():
    for name in files.recording_rules():
        level, metric, operations = name.split(":")
        assert level == "clinic" and metric and operations, name


def _checkable_config(tmp_path: Path) -> Path:
    """prometheus.yml with absolute rule paths, and without Kubernetes discovery: Debian builds
    promtool without it ("field kubernetes_sd_configs not found"), so that part is checked here."""
    config = yaml.safe_load((files.PROMETHEUS / "prometheus.yml").read_text())
    config["rule_files"] = [str(files.PROMETHEUS / path) for path in config["rule_files"]]
    for job in config["scrape_configs"]:
        for discovery in job.pop("kubernetes_sd_configs", []):
            assert discovery == {"role": "pod"}, job["job_name"]
            job.setdefault("static_configs", [{"targets": ["127.0.0.1:9"]}])
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_prometheus_config_passes_promtool_check_config(promtool, tmp_path):
    result = run(promtool, "check", "config", str(_checkable_config(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(path.name in result.stdout for path in files.RULE_FILES), result.stdout  # the rules were read


def test_prometheus_config_loads_every_rule_file_and_discovers_annotated_pods():
    config = yaml.safe_load((files.PROMETHEUS / "prometheus.yml").read_text())
    assert sorted(files.PROMETHEUS / path for path in config["rule_files"]) == files.RULE_FILES
    pods = next(job for job in config["scrape_configs"] if "kubernetes_sd_configs" in job)
    keep = pods["relabel_configs"][0]
    assert keep["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    assert (keep["action"], keep["regex"]) == ("keep", "true")


def test_no_target_label_hides_the_metrics_own_service_label():
    config = yaml.safe_load((files.PROMETHEUS / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        assert all(rule.get("target_label") != "service" for rule in job.get("relabel_configs", [])), job
        assert all("service" not in static.get("labels", {}) for static in job.get("static_configs", [])), job
