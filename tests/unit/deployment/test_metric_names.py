"""How the metric names of the dashboards and rules are read (tests/e2e/distributed/test_metrics_exported.py
checks them against what the services export)."""

from __future__ import annotations

from tests.unit.deployment import observability_files as files


def test_names_are_metrics_and_recording_rules_not_label_values():
    expr = ('sum by (queue) (clinic_amqp_queue_depth{queue=~"clinic_x.dlq", service="clinic_booking"}) '
            '/ clinic:http_errors:ratio_rate5m')
    assert files.names_in(expr) == {"clinic_amqp_queue_depth", "clinic:http_errors:ratio_rate5m"}


def test_recording_rules_resolve_to_the_metrics_they_read():
    recorded = {"clinic:a:rate5m": "sum(rate(clinic_a_total[5m]))",
                "clinic:a:ratio": "clinic:a:rate5m / clinic:b:rate5m",
                "clinic:b:rate5m": "sum(rate(clinic_b_bucket[5m]))"}
    assert files.metric_names(["clinic:a:ratio + clinic_c"], recorded) == {
        "clinic_a_total", "clinic_b_bucket", "clinic_c"}


def test_grafana_variables_are_put_in_place():
    assert files.as_promql('rate(m{service=~"$service"}[$__rate_interval])') == 'rate(m{service=~".*"}[5m])'
    assert files.as_promql("label_values(clinic_http_requests_total, service)") == "clinic_http_requests_total"


def test_every_documented_metric_is_on_a_dashboard_or_in_a_rule():
    used = files.metric_names(files.every_expression(), files.recording_rules())
    bases = {name.removesuffix(suffix) for name in used for suffix in ("_bucket", "_count", "_sum")
             if name.endswith(suffix)} | {name for name in used if not name.endswith(("_bucket", "_count", "_sum"))}
    assert len(bases) == 20 and {"clinic_http_request_duration_seconds", "clinic_saga_duration_seconds",
                                 "clinic_event_store_append_duration_seconds"} <= bases
