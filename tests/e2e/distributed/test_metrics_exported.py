"""Every metric the dashboards and alert rules read is one the running services export.

The names come from the PromQL of deployment/grafana/dashboards/*.json and
deployment/prometheus/rules/*.yml (recording rules resolved to the metrics they read); the
exports from ``/metrics`` of every process of the distributed deployment, after a booking has
been confirmed. A metric declared by a service counts (a labelled counter with no sample yet,
such as dead letters on a healthy run, still shows its ``# TYPE`` line); the ones a confirmed
booking must move are also required to have samples.
"""

from __future__ import annotations

import contextlib
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.distributed import test_distributed_booking as booking
from tests.e2e.distributed.conftest import Cluster, eventually
from tests.unit.deployment import observability_files as files

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",),
            "summary": ("_sum", "_count", ""), "info": ("_info",), "stateset": ("",), "unknown": ("",)}
MOVED_BY_A_BOOKING = {
    "clinic_http_requests_total", "clinic_http_request_duration_seconds_bucket",
    "clinic_amqp_published_total", "clinic_amqp_consumed_total", "clinic_amqp_acked_total",
    "clinic_sagas_started_total", "clinic_sagas_confirmed_total", "clinic_saga_duration_seconds_bucket",
    "clinic_event_store_appended_events_total", "clinic_event_store_append_duration_seconds_bucket",
    "clinic_projection_position",
}
"""Metrics with at least one sample once a booking is confirmed (its requests, messages, saga, events)."""


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return response.read().decode()


def exported(text: str) -> tuple[set[str], set[str], dict[str, set[str]]]:
    """(names declared, names with samples, label names by sample name) of one exposition."""
    declared, sampled, labels = set(), set(), {}
    for family in text_string_to_metric_families(text):
        declared.update(family.name + suffix for suffix in SUFFIXES[family.type])
        for sample in family.samples:
            sampled.add(sample.name)
            labels.setdefault(sample.name, set()).update(sample.labels)
    return declared, sampled, labels


def confirm_a_booking(cluster: Cluster) -> None:
    admin, [patient], doctor, [start] = booking.setup(cluster)
    accepted = booking.book(cluster, admin, patient, doctor, start)
    assert booking.settled(cluster, admin, accepted["consultation_id"])["status"] == "CONFIRMED"


def used_names() -> set[str]:
    names = files.metric_names(files.every_expression(), files.recording_rules())
    assert "clinic_http_requests_total" in names and "clinic_amqp_queue_depth" in names  # the parse found them
    return names


def scrape_all(ports: list[int]) -> tuple[set[str], set[str], dict[str, set[str]]]:
    """The union of ``exported`` over processes."""
    declared, sampled, labels = set(), set(), {}
    for port in ports:
        one_declared, one_sampled, one_labels = exported(scrape(port))
        declared |= one_declared
        sampled |= one_sampled
        for sample, names in one_labels.items():
            labels.setdefault(sample, set()).update(names)
    return declared, sampled, labels


def test_every_metric_the_dashboards_and_alerts_use_is_exported(cluster):
    confirm_a_booking(cluster)
    used = used_names()
    ports = list(cluster.ports.values())  # every process: APIs, workers, projections, the authorization server
    # the relays and the projection worker move their counters a moment after the booking settles
    with contextlib.suppress(AssertionError):  # reported below, with the names
        eventually(lambda: MOVED_BY_A_BOOKING <= scrape_all(ports)[1], timeout=15, what="the booking's samples")
    declared, sampled, labels = scrape_all(ports)
    assert sorted(used - declared) == [], "used by the dashboards or rules, exported by no service"
    for name in used:
        if name.endswith("_bucket"):
            base = name.removesuffix("_bucket")
            assert {base + "_sum", base + "_count"} <= declared, base
    assert sorted(MOVED_BY_A_BOOKING - sampled) == [], "a confirmed booking left these without a sample"
    assert "service" in labels["clinic_http_requests_total"]  # the dashboards' service variable reads it
