"""Tracing: the provider the composition root builds, and how a trace crosses the outbox and AMQP."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from application.settings import Settings
from infrastructure.observability.tracing import (
    OpenTelemetrySpans,
    build_tracer_provider,
    consumer_span,
    current_traceparent,
    publish_span,
    traces_url,
)
from process_managers.spans import PassThrough
from projections.memory_store import MemoryViewStore
from tests.spans import Spans, installed_spans

TRACE = "5b1c0e2a6f1d4c3b8a7e9f0d1c2b3a49"
STORED = f"00-{TRACE}-8f3e2d1c0b9a8776-01"
OTHER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TOPIC = "domain.consultation:Consultation.Requested"


@pytest.fixture
def spans() -> Iterator[Spans]:
    with installed_spans() as installed:
        yield installed


def test_without_an_endpoint_nothing_is_built_and_the_api_stays_a_no_op():
    assert build_tracer_provider("booking", Settings()) is None
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def test_the_provider_names_the_service_and_its_environment():
    settings = Settings.from_env({"CLINIC_OTLP_ENDPOINT": "http://127.0.0.1:4318", "CLINIC_ENVIRONMENT": "staging"})
    provider = build_tracer_provider("booking", settings)
    assert provider is not None
    attributes = provider.resource.attributes
    assert (attributes["service.name"], attributes["service.namespace"], attributes["deployment.environment"]) == \
        ("booking", "clinic", "staging")
    provider.shutdown()


@pytest.mark.parametrize(("env", "endpoint"), [
    ({"CLINIC_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:4318"}, "http://a:4318"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:4318"}, "http://b:4318"),
    ({}, None),
])
def test_the_endpoint_comes_from_clinic_or_the_standard_variable(env, endpoint):
    assert Settings.from_env(env).otlp_endpoint == endpoint


def test_the_traces_url_is_under_the_collectors_base_endpoint():
    assert traces_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


def test_publishing_continues_the_events_trace_and_sends_the_publish_span_on(spans):
    headers = {"topic": TOPIC, "traceparent": STORED, "correlation_id": "c-1"}
    with publish_span(headers, "clinic.events", "consultations.Consultation.Requested", "Consultations:1"):
        pass
    [publish] = spans.finished()
    assert (publish.name, publish.kind) == ("publish Consultation.Requested", SpanKind.PRODUCER)
    assert format(publish.context.trace_id, "032x") == TRACE
    assert format(publish.parent.span_id, "016x") == "8f3e2d1c0b9a8776"
    assert headers["traceparent"] == f"00-{TRACE}-{format(publish.context.span_id, '016x')}-01"
    assert publish.attributes["messaging.system"] == "rabbitmq"
    assert publish.attributes["clinic.correlation_id"] == "c-1"


def test_a_relay_that_does_not_trace_passes_the_events_trace_on_unchanged():
    headers = {"topic": TOPIC, "traceparent": STORED}
    with publish_span(headers, "clinic.events", "consultations.Consultation.Requested", "Consultations:1"):
        pass
    assert headers["traceparent"] == STORED


def test_consuming_is_a_child_of_the_publish_span_named_in_the_headers(spans):
    headers = {"topic": TOPIC.encode(), "traceparent": STORED.encode()}  # AMQP may hand strings back as bytes
    with consumer_span(headers, "clinic.booking", "Consultations:1"):
        inside = current_traceparent()
    [process] = spans.finished()
    assert (process.name, process.kind) == ("process Consultation.Requested", SpanKind.CONSUMER)
    assert format(process.parent.span_id, "016x") == "8f3e2d1c0b9a8776"
    assert inside.split("-")[1] == TRACE
    assert process.attributes["messaging.destination.name"] == "clinic.booking"


def test_processing_outside_any_span_starts_one_from_the_stored_trace(spans):
    event = SimpleNamespace(traceparent=STORED, correlation_id="c-1")
    with OpenTelemetrySpans().processing("Booking", event) as stamped:
        pass
    [process] = spans.finished()
    assert process.name == "process SimpleNamespace"
    assert format(process.parent.span_id, "016x") == "8f3e2d1c0b9a8776"
    assert stamped == f"00-{TRACE}-{format(process.context.span_id, '016x')}-01"


def test_processing_inside_a_consumers_span_uses_that_span(spans):
    consumer = SpanContext(int(TRACE, 16), 0x1111, is_remote=False, trace_flags=TraceFlags(1))
    with trace.use_span(NonRecordingSpan(consumer)), \
            OpenTelemetrySpans().processing("Booking", SimpleNamespace(traceparent=OTHER)) as stamped:
        pass
    assert spans.finished() == []
    assert stamped == f"00-{TRACE}-0000000000001111-01"


def test_a_batch_of_one_trace_is_written_in_it_and_a_mixed_batch_links_to_each(spans):
    with OpenTelemetrySpans().batch(MemoryViewStore(), "consultation_detail", 3, [STORED, None, STORED]):
        pass
    with OpenTelemetrySpans().batch(MemoryViewStore(), "consultation_detail", 2, [STORED, OTHER]):
        pass
    single, mixed = spans.finished()
    assert single.name == "memory.apply_batch" and format(single.parent.span_id, "016x") == "8f3e2d1c0b9a8776"
    assert single.attributes["projection.ops"] == 3
    assert mixed.parent is None
    assert {format(link.context.trace_id, "032x") for link in mixed.links} == {TRACE, OTHER.split("-")[1]}


@pytest.mark.parametrize("implementation", [PassThrough(), OpenTelemetrySpans()], ids=["no spans", "no provider"])
def test_without_tracing_processing_stamps_the_stored_trace_and_opens_no_span(implementation):
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    with implementation.processing("Booking", SimpleNamespace(traceparent=STORED)) as stamped, \
            implementation.saga("confirm") as step:
        step.describe_sagas([])
        inside = implementation.current_traceparent()
    assert (stamped, inside) == (STORED, None)
