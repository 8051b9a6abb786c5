"""One booking is one trace across the deployed services (OS processes, RabbitMQ, mTLS).

Every service exports its spans over OTLP/HTTP to a receiver in this process
(``interfaces/local_deployment/otlp.py``); the test finds the booking's trace by the correlation id on
its root span, as an operator would, and waits until every hop has arrived.
"""

from __future__ import annotations

import json
import urllib.request

from interfaces.local_deployment.otlp import ReceivedSpan
from tests.e2e.distributed.conftest import Cluster, eventually
from tests.e2e.distributed.test_distributed_booking import settled, setup

CORRELATION_ID = "trace-e2e-booking-1"
SERVICES = {"consultations", "booking", "scheduling", "registry", "projections"}


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


def test_one_booking_is_one_trace_across_every_service(cluster):
    # given a deployment exporting to the receiver; when one booking is made
    admin, [patient], doctor, [start] = setup(cluster)
    accepted = book(cluster, admin, {"patient_id": patient, "doctor_id": doctor, "start": start, "reason": "e2e"})
    assert settled(cluster, admin, accepted["consultation_id"])["status"] == "CONFIRMED"
    # then its root span is found by the correlation id, and its trace fills in with every hop
    root = eventually(lambda: root_of(cluster), timeout=20, what="the booking's root span")
    try:
        eventually(lambda: not missing(cluster.otlp.trace(root.trace_id)) and closed(cluster.otlp.trace(root.trace_id)),
                   timeout=30, what="the complete trace")
    except AssertionError:
        raise AssertionError(f"trace incomplete, missing: {missing(cluster.otlp.trace(root.trace_id))}") from None
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
