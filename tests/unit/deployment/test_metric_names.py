"""How the metric names of the dashboards and rules are read (tests/e2e/distributed/test_metrics_exported.py
checks them against what the services export)."""

from __future__ import annotations

import re

from tests.unit.deployment import observability_files as files


def test_names_are_metrics_and_recording_rules_not_label_values():
    expr = ('sum by (queue) (clinic_amqp_queue_depth{queue=~"clinic_x.dlq", service="clinic_booking"}) '
            '/ clinic:http_errors:ratio_rate5m')
    assert files.names_in(expr) == {"clinic_amqp_queue_depth", "clinic:http_errors:ratio_rate5m"}


def test_recording_rules_resolve_to_the_metrics_they_read():
    recorded = {"clinic:a:rate5m": ["sum(rate(clinic_a_total[5m]))"],
                "clinic:a:ratio": ["clinic:a:rate5m / clinic:b:rate5m"],
                "clinic:b:rate5m": ["sum(rate(clinic_b_bucket[5m]))", "sum(rate(clinic_d_count[5m]))"]}
    assert files.metric_names(["clinic:a:ratio + clinic_c"], recorded) == {
        "clinic_a_total", "clinic_b_bucket", "clinic_d_count", "clinic_c"}


def test_grafana_variables_are_put_in_place():
    assert files.as_promql('rate(m{service=~"$service"}[$__rate_interval])') == 'rate(m{service=~".*"}[5m])'
    assert files.as_promql("label_values(clinic_http_requests_total, service)") == "clinic_http_requests_total"


METRICS = {
    "clinic_http_requests_total", "clinic_http_request_duration_seconds", "clinic_readiness_check",
    "clinic_amqp_published_total", "clinic_amqp_consumed_total", "clinic_amqp_acked_total",
    "clinic_amqp_retried_total", "clinic_amqp_dead_lettered_total", "clinic_amqp_queue_depth",
    "clinic_sagas_started_total", "clinic_sagas_confirmed_total", "clinic_sagas_compensated_total",
    "clinic_sagas_timed_out_total", "clinic_sagas_cancelled_total", "clinic_saga_duration_seconds",
    "clinic_reschedules_total",
    "clinic_circuit_breaker_state", "clinic_circuit_breaker_transitions_total",
    "clinic_projection_position", "clinic_projection_lag_events", "clinic_projection_lag_seconds",
    "clinic_projection_quarantined_events",
    "clinic_event_store_append_duration_seconds", "clinic_event_store_appended_events_total",
    "clinic_webhook_attempts_total",
}
"""The services' metrics (issue 6); histograms by their base name."""
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
METRICS_DOC = files.ROOT / "docs" / "observability-metrics.md"


def documented() -> set[str]:
    """The metric names of the table in docs/observability-metrics.md (first column)."""
    return set(re.findall(r"^\| `(clinic_[a-z0-9_]+)` \|", METRICS_DOC.read_text(), flags=re.MULTILINE))


def test_the_dashboards_and_rules_read_every_metric_and_only_documented_ones():
    used = {base(name) for name in files.metric_names(files.every_expression(), files.recording_rules())}
    assert METRICS <= documented()
    assert used == METRICS


def base(name: str) -> str:
    """A histogram's name without ``_bucket``/``_count``/``_sum``; other names as they are."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name
