"""The SLO rules (deployment/prometheus/build.py → rules/clinic-slo.yml) against what they measure and
what docs/slas.md promises: the generated file is current, every SLO has every window and a budget,
the histogram buckets and routes they select are ones the code really produces, every metric they
read is declared by ``Metrics``, and the document states the same objectives and targets.
The PromQL itself is unit-tested by promtool (deployment/prometheus/tests/slo-test.yml)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from infrastructure.observability.metrics import HTTP_BUCKETS, SAGA_BUCKETS, Metrics
from interfaces.auth.service import TOKEN_PATH
from interfaces.http.internal import ELIGIBILITY_PATH, HEALTH_PATH
from interfaces.http.metrics import METRICS_PATH
from tests.unit.deployment import observability_files as files

SLO_RULES = files.PROMETHEUS / "rules" / "clinic-slo.yml"
BUCKETS = {"clinic_http_request_duration_seconds": HTTP_BUCKETS, "clinic_saga_duration_seconds": SAGA_BUCKETS}
MINUTES_IN_30_DAYS = 30 * 24 * 60


def load_build():
    spec = importlib.util.spec_from_file_location("prometheus_build", files.PROMETHEUS / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


build = load_build()


def slo_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(SLO_RULES.read_text())["groups"] for rule in group["rules"]]


def test_the_rule_file_is_what_build_py_writes():
    result = subprocess.run([sys.executable, str(files.PROMETHEUS / "build.py"), "--check"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_every_slo_has_a_budget_and_an_error_ratio_per_window_and_nothing_else_is_labelled_slo():
    names = {slo.name for slo in build.SLOS}
    by_slo: dict[str, set[str]] = {}
    for rule in slo_rules():
        if "slo" in rule.get("labels", {}):
            by_slo.setdefault(rule["labels"]["slo"], set()).add(rule["record"])
    assert set(by_slo) == names
    for slo, records in by_slo.items():
        assert "clinic:slo_error_budget:ratio" in records, slo
        assert {f"clinic:sli_error:ratio_rate{w}" for w in build.WINDOWS} <= records, slo


def test_budgets_are_one_minus_the_objective_and_leave_room_for_the_fastest_burn():
    for slo in build.SLOS:
        assert 0 < slo.budget < 1 and slo.budget == pytest.approx(1 - slo.objective)
        assert 14.4 * slo.budget < 1, f"{slo.name}: a 14.4x burn of its budget is more than every event"


def test_the_burn_rate_alerts_read_windows_the_rules_record():
    recorded = set(files.recording_rules())
    burn = [rule for rule in files.alerts() if rule["alert"].startswith("ClinicErrorBudgetBurn")]
    assert {rule["alert"] for rule in burn} == {"ClinicErrorBudgetBurnFast", "ClinicErrorBudgetBurnSlow",
                                                "ClinicErrorBudgetBurnSteady"}
    for rule in burn:
        names = files.names_in(rule["expr"])
        assert "clinic:slo_error_budget:ratio" in names and names <= recorded, rule["alert"]
    assert {rule["alert"]: rule["labels"]["severity"] for rule in burn} == {
        "ClinicErrorBudgetBurnFast": "critical", "ClinicErrorBudgetBurnSlow": "critical",
        "ClinicErrorBudgetBurnSteady": "warning"}


def test_latency_targets_are_bucket_boundaries_the_histograms_export():
    found = 0
    for rule in slo_rules():
        for metric, le in re.findall(r'(clinic_[a-z_]+)_bucket\{[^}]*le="([^"]+)"', rule["expr"]):
            assert le in {floatToGoString(bound) for bound in BUCKETS[metric]}, (rule["record"], metric, le)
            found += 1
    assert found >= 6 * len(build.WINDOWS)  # the six latency SLOs, every window


def test_the_routes_the_slos_select_are_the_apps_own():
    assert build.INTERNAL == f'service="registry", route="{ELIGIBILITY_PATH}"'
    assert build.TOKEN == f'service="auth", route="{TOKEN_PATH}"'
    left_out = re.fullmatch(r'route!~"(.+)"', build.PUBLIC_ROUTES).group(1)
    for path in ("/health/live", "/health/ready", METRICS_PATH, HEALTH_PATH, ELIGIBILITY_PATH):
        assert re.fullmatch(left_out, path), path
    for path in ("/v1/consultations", "/v1/patients/{patient_id}", "unmatched"):
        assert not re.fullmatch(left_out, path), path


def test_every_metric_the_slo_rules_read_is_declared_by_the_services_metrics():
    declared = set()
    for family in text_string_to_metric_families(Metrics("registry").exposition()[0].decode()):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}.get(family.type, ("",))
        declared.update(family.name + suffix for suffix in suffixes)
    used = files.metric_names([str(rule["expr"]) for rule in slo_rules()], files.recording_rules())
    assert "clinic_saga_duration_seconds_bucket" in used and "clinic_projection_lag_seconds" in used
    assert sorted(used - declared) == []


def _rows() -> dict[str, str]:
    """docs/slas.md's SLO table: the row of each ``slo`` (first cell, in backticks)."""
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|(.*)$", files.SLAS_DOC.read_text(), flags=re.MULTILINE)
    return dict(rows)


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:g} ms" if seconds < 1 else f"{seconds:g} s"


def test_docs_slas_states_every_slo_with_its_objective_budget_and_target():
    rows = _rows()
    assert set(rows) == {slo.name for slo in build.SLOS}
    for slo in build.SLOS:
        row = rows[slo.name]
        assert f"{slo.objective * 100:g} %" in row, slo.name
        assert f"{slo.budget * MINUTES_IN_30_DAYS:,.0f} min" in row, slo.name
        target = re.search(r'le="([^"]+)"', slo.bad)
        if target:
            assert f"≤ {_duration(float(target.group(1)))}" in row, slo.name
    assert f"≤ {build.FRESHNESS_SECONDS} s" in rows[build.FRESHNESS.name]
