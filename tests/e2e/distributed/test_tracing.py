"""One booking is one trace across the deployed services (OS processes, RabbitMQ, mTLS), and every
log line any process writes for it carries its correlation id and that trace's id.

Every service exports its spans over OTLP/HTTP to a receiver in this process
(``interfaces/local_deployment/otlp.py``); the test finds the booking's trace by the correlation id on
its root span, as an operator would, and waits until every hop has arrived. The processes' JSON logs
are collected (``LocalDeployment.log_lines``) and filtered by that correlation id, as the central log
store would be. The module's one booking is made once and shared by both tests.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from interfaces.local_deployment.deployment import GATEWAY, LogLine
from interfaces.local_deployment.otlp import ReceivedSpan
from tests.e2e.distributed.bookings import settled, setup
from tests.e2e.distributed.cluster import deployed
from tests.e2e.distributed.conftest import Cluster, eventually

CORRELATION_ID = "trace-e2e-booking-1"
SERVICES = {"consultations", "booking", "scheduling", "registry", "projections"}
LOGGING = {GATEWAY, "consultations-worker", "booking", "scheduling", "registry", "notifications", "projections"}
"""The processes that log a booking at DEBUG: the gateway's access line, each worker's line per message it
processes (consultations, booking, scheduling, notifications), the registry's internal access line (the saga's
eligibility call), the projection worker's line per event. The consultations API that took the POST logs
nothing of its own for it (``CLINIC_ACCESS_LOG`` is off: the gateway's line, the server span and the HTTP
metrics cover the request), so it is not required; what it does log (its call for the issuer's keys on a
first request) is checked like every other line. At INFO only the gateway's line, the registry's access line
and the booking worker's registry call would be there: the per-message and per-event lines are DEBUG
(docs/adr/0018-one-delivery-engine.md)."""


@dataclass(frozen=True)
class Booking:
    consultation_id: str
    root: ReceivedSpan
    """The POST's server span: the root of the booking's trace."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """The deployment logging at DEBUG, the level an operator turns on to follow one booking through every
    process (at INFO no line is written per event or message: counters count them)."""
    with deployed(tmp_path_factory.mktemp("cluster"), env={"CLINIC_LOG_LEVEL": "DEBUG"}) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def booking(cluster: Cluster) -> Booking:
    """One booking, confirmed, made with ``CORRELATION_ID``; its root span found by that id."""
    admin, [patient], doctor, [start] = setup(cluster)
    accepted = book(cluster, admin, {"patient_id": patient, "doctor_id": doctor, "start": start, "reason": "e2e"})
    assert settled(cluster, admin, accepted["consultation_id"])["status"] == "CONFIRMED"
    root = eventually(lambda: root_of(cluster), timeout=20, what="the booking's root span")
    return Booking(accepted["consultation_id"], root)


def book(cluster: Cluster, token: str, body: dict) -> dict:
    request = urllib.request.Request(f"{cluster.base}/v1/consultations", method="POST", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                                              "X-Correlation-Id": CORRELATION_ID})
    with urllib.request.urlopen(request, timeout=15) as response:
        assert response.status == 202
        return json.loads(response.read())


def root_of(cluster: Cluster) -> ReceivedSpan | None:
    """The booking's root span: the POST's server span, which carries the correlation id."""
    return next((s for s in cluster.otlp.received() if s.kind == "SERVER" and s.parent_span_id == ""
                 and s.attributes.get("clinic.correlation_id") == CORRELATION_ID), None)


def missing(spans: list[ReceivedSpan]) -> list[str]:
    """What a complete booking trace has that ``spans`` lacks yet."""
    def has(service: str, kind: str, name: str, **attributes: object) -> bool:
        return any(s.service == service and s.kind == kind and s.name.startswith(name)
                   and all(value in _as_list(s.attributes.get(key)) for key, value in attributes.items())
                   for s in spans)

    wanted = {
        "services": SERVICES <= {s.service for s in spans},
        "POST server span": has("consultations", "SERVER", "POST /v1/consultations"),
        "publish": has("consultations", "PRODUCER", "publish Consultation.Requested"),
        "process": has("booking", "CONSUMER", "process Consultation.Requested"),
        "saga.hold_slot": has("booking", "INTERNAL", "saga.hold_slot"),
        "saga.validate_registrants": has("booking", "INTERNAL", "saga.validate_registrants"),
        "saga.confirm": has("booking", "INTERNAL", "saga.confirm"),
        "registry client": has("booking", "CLIENT", "GET"),
        "registry internal server": has("registry", "SERVER", "GET /internal/v1/eligibility"),
        "confirmation append": has("consultations", "INTERNAL", "eventstore.append",
                                   **{"eventstore.topics": "Consultation.Confirmed"}),
        "projection write": has("projections", "INTERNAL", "redis.apply_batch",
                                **{"projection.name": "consultation_detail"}),
    }
    return [what for what, present in wanted.items() if not present]


def closed(spans: list[ReceivedSpan]) -> bool:
    """Every parent has arrived too (a parent ends, and is exported, after its children)."""
    ids = {s.span_id for s in spans}
    return all(s.parent_span_id in ids for s in spans if s.parent_span_id)


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else [value]


def test_one_booking_is_one_trace_across_every_service(cluster, booking):
    # given a deployment exporting to the receiver, and one booking made; its root span found by the correlation id
    root = booking.root
    # then its trace fills in with every hop
    complete(cluster, root.trace_id)
    spans = cluster.otlp.trace(root.trace_id)
    # the registry's internal server span is the child of the booking service's client span (over mTLS)
    [client] = [s for s in spans if s.service == "booking" and s.kind == "CLIENT"
                and "/internal/v1/eligibility" in str(s.attributes.get("url.full", s.attributes.get("http.url")))]
    [server] = [s for s in spans if s.service == "registry" and s.kind == "SERVER"]
    assert server.parent_span_id == client.span_id
    # a consumer's span is the child of the publisher's, across processes
    publishes = {s.span_id for s in spans if s.kind == "PRODUCER"}
    assert all(s.parent_span_id in publishes for s in spans if s.kind == "CONSUMER")
    # and the spans form one tree under the root
    assert [s for s in spans if s.parent_span_id == ""] == [root]


def test_every_log_line_of_the_booking_carries_its_correlation_id_and_trace_id(cluster, booking):
    # given the booking's trace complete (every process has done its part)
    trace_id = booking.root.trace_id
    complete(cluster, trace_id)
    # when the processes' logs are collected and filtered by the correlation id, as the log store would be
    def lines_of_every_process() -> list[LogLine]:
        lines = [line for line in cluster.log_lines() if line.fields.get("correlation_id") == CORRELATION_ID]
        return lines if LOGGING <= {line.process for line in lines} else []

    try:
        lines = eventually(lines_of_every_process, timeout=20, what="a line of the booking from every process")
    except AssertionError:
        seen = {line.process for line in cluster.log_lines() if line.fields.get("correlation_id") == CORRELATION_ID}
        raise AssertionError(f"no line of the booking from {sorted(LOGGING - seen)}; lines from {sorted(seen)}") from None
    # then every one carries the trace's id (the gateway's access line apart: nginx makes no span)
    untraced = [line for line in lines if line.process != GATEWAY and line.fields.get("trace_id") != trace_id]
    assert untraced == [], _shown(untraced)
    # and every line of the trace, in any process, carries the correlation id
    uncorrelated = [line for line in cluster.log_lines() if line.fields.get("trace_id") == trace_id
                    and line.fields.get("correlation_id") != CORRELATION_ID]
    assert uncorrelated == [], _shown(uncorrelated)


def complete(cluster: Cluster, trace_id: str) -> None:
    """Wait until the trace has every hop and every parent."""
    try:
        eventually(lambda: not missing(cluster.otlp.trace(trace_id)) and closed(cluster.otlp.trace(trace_id)),
                   timeout=30, what="the complete trace")
    except AssertionError:
        raise AssertionError(f"trace incomplete, missing: {missing(cluster.otlp.trace(trace_id))}") from None


def _shown(lines: list[LogLine]) -> str:
    return "\n".join(f"{line.process}:{line.number} {json.dumps(line.fields)[:400]}" for line in lines[:20])
