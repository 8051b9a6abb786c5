"""Writes the clinic's Grafana dashboards (``dashboards/*.json``) from the definitions below.

    .venv/bin/python deployment/grafana/build.py            # rewrite the JSON files
    .venv/bin/python deployment/grafana/build.py --check    # exit 1 if a file differs

The JSON files are what Grafana loads (provisioning/dashboards/clinic.yml); this script is how
they are edited, so every panel keeps the same datasource, legend and layout conventions.
tests/unit/deployment/test_grafana_dashboards.py fails when a file and this script disagree.
Metric names and labels: docs/observability-metrics.md; alerts: docs/observability-alerts.md.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from panels import (  # the folder is not a package: build.py puts it on sys.path above
    RATE,
    S,
    breaker_timeline,
    dashboard,
    quantiles,
    rate,
    stat,
    target,
    timeseries,
)

OUT = Path(__file__).resolve().parent / "dashboards"
HTTP = "clinic_http_requests_total"
NOT_PROBES = 'route!~"/health/.*|/metrics"'
"""As in the SLI (deployment/prometheus/rules/clinic-recording.yml): probes and scrapes are not traffic."""
DLQ = 'queue=~".+[.]dlq"'
RETRY = 'queue=~".+[.]retry[.].+"'
MAIN = 'queue!~".+[.](dlq|retry[.].+)"'


def services() -> dict:
    """Per service: request rate, latency quantiles by route, 4xx/5xx rates and ratios, the SLO."""
    def ratio(status: str) -> dict:
        errors = f"sum by (service) (rate({HTTP}{{{S}, {NOT_PROBES}, status=~\"{status}\"}}{RATE}))"
        total = f"sum by (service) (rate({HTTP}{{{S}, {NOT_PROBES}}}{RATE}))"
        return target(f"{errors} / {total}", f"{status[0]}xx {{{{service}}}}")

    traffic = [
        timeseries("Requests per second by service", "Every response, probes and scrapes included.",
                   [rate(HTTP, "service", "{{service}}")], "reqps"),
        timeseries("Requests per second by route", "Route templates, so ids do not split the series.",
                   [rate(HTTP, "service, method, route", "{{service}} {{method}} {{route}}")], "reqps"),
    ]
    latency = [
        timeseries(f"{name} latency by route", f"{name} of request duration, per route template.",
                   quantiles("clinic_http_request_duration_seconds", "service, route", "{{service}} {{route}}",
                             ((name, q),)), "s", width=8)
        for name, q in (("p50", "0.5"), ("p95", "0.95"), ("p99", "0.99"))
    ] + [timeseries("Latency by service (p50, p95, p99)", "All routes of a service together.",
                    quantiles("clinic_http_request_duration_seconds", "service", "{{service}}"), "s", width=24)]
    errors = [
        timeseries("4xx and 5xx per second", "Client errors (4xx) and server errors (5xx), probes left out.",
                   [rate(HTTP, "service", "4xx {{service}}", f'{NOT_PROBES}, status=~"4.."'),
                    rate(HTTP, "service", "5xx {{service}}", f'{NOT_PROBES}, status=~"5.."')], "reqps"),
        timeseries("4xx and 5xx ratio", "Share of responses that were 4xx or 5xx. Alert: 5xx over 5 %.",
                   [ratio("4.."), ratio("5..")], "percentunit", thresholds=(0.05,)),
        timeseries("5xx per second by route", "Which routes fail.",
                   [rate(HTTP, "service, method, route, status", "{{service}} {{method}} {{route}} {{status}}",
                         'status=~"5.."')], "reqps", width=24),
    ]
    slo = [
        stat("Availability over the time range", "Share of non-5xx responses (SLO: 99.5 %).",
             [target(f"1 - (sum by (service) (increase({HTTP}{{{S}, {NOT_PROBES}, status=~\"5..\"}}[$__range])) "
                     f"or sum by (service) (increase({HTTP}{{{S}, {NOT_PROBES}}}[$__range])) * 0) / "
                     f"sum by (service) (increase({HTTP}{{{S}, {NOT_PROBES}}}[$__range]))", "{{service}}")],
             "percentunit", width=8, thresholds=(0.995,), colors=("green",), base="red"),
        timeseries("Error-budget burn rate", "5xx ratio divided by the budget (0.5 %). Alerts: 14.4 over 1h "
                   "and 5m, 6 over 6h and 30m.",
                   [target(f"clinic:http_errors:ratio_rate{w}{{{S}}} / 0.005", f"{w} {{{{service}}}}")
                    for w in ("5m", "30m", "1h", "6h")],
                   "none", width=16, thresholds=(6, 14.4)),
    ]
    return dashboard("clinic-services", "Clinic — services", "HTTP traffic, latency and errors of each service.",
                     [("Traffic", traffic), ("Latency", latency), ("Errors", errors),
                      ("Availability SLO (99.5 % non-5xx)", slo), ("Every SLO (docs/slas.md)", slos())])


def slos() -> list[dict]:
    """Every SLO of deployment/prometheus/build.py: its error ratio, burn rate and the budget spent lately."""
    legend = "{{slo}} {{service}} {{projection}}"
    def burn(w: str) -> str:
        return f"clinic:sli_error:ratio_rate{w}{{{S}}} / on (slo) group_left () clinic:slo_error_budget:ratio"
    return [
        timeseries("SLI error ratio (1 h)", "Share of each SLO's events that were bad over the last hour "
                   "(5xx, slower than the target, timed out, stale).",
                   [target(f"clinic:sli_error:ratio_rate1h{{{S}}}", legend)], "percentunit", width=8),
        timeseries("Burn rate (1 h, 6 h)", "Error ratio / budget. Pages: 14.4 over 1h and 5m, 6 over 6h and 30m; "
                   "ticket: 1 over 3d and 6h.",
                   [target(burn("1h"), f"1h {legend}"), target(burn("6h"), f"6h {legend}")], "none", width=8,
                   thresholds=(1, 6, 14.4)),
        stat("Budget spent in the last 3 days", "Share of the 30-day error budget the last 3 days spent "
             "(10 % = on track to spend it all; ticket above).",
             [target(f"{burn('3d')} * 3 / 30", legend)], "percentunit", width=8, thresholds=(0.1,),
             colors=("red",)),
    ]


def messaging_sagas() -> dict:
    """AMQP throughput, backlog, retries and dead letters; saga outcomes and duration; breakers."""
    depth = "clinic_amqp_queue_depth"
    amqp = [
        timeseries("Published per second", "Events the outbox relays published, by application.",
                   [rate("clinic_amqp_published_total", "service, application", "{{service}} {{application}}")],
                   "ops"),
        timeseries("Consumed and acked per second", "Deliveries to each follower, and those it acknowledged.",
                   [rate("clinic_amqp_consumed_total", "service, follower", "consumed {{follower}}"),
                    rate("clinic_amqp_acked_total", "service, follower", "acked {{follower}}")], "ops"),
        timeseries("Backlog (main queues)", "Messages waiting in each follower's queue.",
                   [target(f"max by (queue) ({depth}{{{S}, {MAIN}}})", "{{queue}}")], "short"),
        timeseries("Retry queues", "Messages waiting out a retry delay, per delay level.",
                   [target(f"max by (queue) ({depth}{{{S}, {RETRY}}})", "{{queue}}")], "short"),
        timeseries("Retries per second by level", "Failed deliveries sent to a retry queue.",
                   [rate("clinic_amqp_retried_total", "service, follower, level", "{{follower}} level {{level}}")],
                   "ops"),
        timeseries("Dead-lettered per second", "Messages that exhausted their retries. Alert: any.",
                   [rate("clinic_amqp_dead_lettered_total", "service, follower", "{{follower}}")], "ops"),
        stat("Dead-letter queues", "Messages in each DLQ now. Alert: any for 5 minutes.",
             [target(f"max by (queue) ({depth}{{{S}, {DLQ}}})", "{{queue}}")], "short", width=24,
             thresholds=(1,)),
    ]
    sagas = [
        timeseries("Sagas started per second", "Bookings accepted (202).",
                   [rate("clinic_sagas_started_total", "service", "{{service}}")], "ops", width=8),
        timeseries("Outcomes per second", "Confirmed, compensated (by reason), timed out, and cancelled by the "
                   "patient or clinic before deciding.",
                   [rate("clinic_sagas_confirmed_total", "service", "confirmed"),
                    rate("clinic_sagas_compensated_total", "service, reason", "compensated: {{reason}}"),
                    rate("clinic_sagas_timed_out_total", "service", "timed out"),
                    rate("clinic_sagas_cancelled_total", "service", "cancelled")], "ops", width=16),
        timeseries("Reschedules per second", "Reschedule sagas ended: moved, failed (the consultation kept its "
                   "start and slot), or cancelled.",
                   [rate("clinic_reschedules_total", "service, outcome", "{{outcome}}")], "ops", width=8),
        timeseries("Webhook attempts per second", "Deliveries to clients' URLs: delivered, retrying (failed, "
                   "tried again later), failed (given up after the last attempt).",
                   [rate("clinic_webhook_attempts_total", "service, outcome", "{{outcome}}")], "ops", width=8),
        timeseries("Compensation ratio (15 min)", "compensated / (confirmed + compensated). Alert: over 20 % "
                   "of at least 20.", [target(f"clinic:sagas_compensated:ratio_rate15m{{{S}}}", "{{service}}")],
                   "percentunit", width=8, thresholds=(0.2,)),
        timeseries("Saga duration by outcome (p50, p95, p99)", "From start to confirmation or compensation.",
                   quantiles("clinic_saga_duration_seconds", "service, outcome", "{{outcome}}"), "s", width=8),
    ]
    breakers = [
        breaker_timeline("Circuit breaker state", "Green closed, yellow half-open, red open. Alert: open 1 min.",
                         [target(f"max by (service, dependency) (clinic_circuit_breaker_state{{{S}}})",
                                 "{{service}} → {{dependency}}")]),
        timeseries("Transitions", "State changes of each breaker.",
                   [target(f"sum by (service, dependency, from_state, to_state) "
                           f"(increase(clinic_circuit_breaker_transitions_total{{{S}}}{RATE}))",
                           "{{dependency}} {{from_state}} → {{to_state}}")], "short", width=24, bars=True),
    ]
    return dashboard("clinic-messaging-sagas", "Clinic — messaging and sagas",
                     "RabbitMQ throughput, backlog, retries and dead letters; booking sagas; circuit breakers.",
                     [("Messaging (AMQP)", amqp), ("Sagas", sagas), ("Circuit breakers", breakers)])


def read_side() -> dict:
    """Projection lag and position; event-store append latency and rate."""
    projections = [
        timeseries("Lag (seconds)", "Age of the newest event a read model has not applied. Alert: over 30 s "
                   "for 5 min.", [target(f"max by (service, projection) (clinic_projection_lag_seconds{{{S}}})",
                                         "{{projection}}")], "s", thresholds=(30,)),
        timeseries("Lag (events)", "Events of each leader a read model has not applied yet.",
                   [target(f"max by (service, projection, leader) (clinic_projection_lag_events{{{S}}})",
                           "{{projection}} ← {{leader}}")], "short"),
        timeseries("Position", "Notification id each read model has applied, per leader.",
                   [target(f"max by (service, projection, leader) (clinic_projection_position{{{S}}})",
                           "{{projection}} ← {{leader}}")], "none", width=24),
    ]
    store = [
        timeseries("Append latency (p95, p99)", "Time to append one batch of events. Alert: p99 over 250 ms "
                   "for 10 min.", quantiles("clinic_event_store_append_duration_seconds", "service, application",
                                            "{{application}}", (("p95", "0.95"), ("p99", "0.99"))), "s",
                   thresholds=(0.25,)),
        timeseries("Appends and events per second", "Append calls, and the events they stored.",
                   [rate("clinic_event_store_append_duration_seconds_count", "service, application",
                         "appends {{application}}"),
                    rate("clinic_event_store_appended_events_total", "service, application",
                         "events {{application}}")], "ops"),
    ]
    return dashboard("clinic-read-side", "Clinic — read side and event store",
                     "How far the read models are behind, and how the event stores append.",
                     [("Projections", projections), ("Event store", store)])


DASHBOARDS: dict[str, Callable[[], dict]] = {
    "clinic-services.json": services,
    "clinic-messaging-sagas.json": messaging_sagas,
    "clinic-read-side.json": read_side,
}


def render(build: Callable[[], dict]) -> str:
    """The JSON text of one dashboard, as committed."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """Write the dashboards, or with ``--check`` report those whose file differs."""
    stale = [name for name, build in DASHBOARDS.items()
             if not (OUT / name).exists() or (OUT / name).read_text() != render(build)]
    if "--check" in argv:
        for name in stale:
            print(f"out of date (run deployment/grafana/build.py): {name}", file=sys.stderr)
        return 1 if stale else 0
    for name, build in DASHBOARDS.items():
        (OUT / name).write_text(render(build))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
