"""OpenTelemetry tracing: one provider per process, and the trace carried through events.

``configure_tracing`` is called once by a composition root: with an OTLP endpoint
(``CLINIC_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``) it installs a ``TracerProvider``
that batches spans to the collector over OTLP/HTTP; without one it installs nothing and every
span below is the API's no-op (which still passes an incoming ``traceparent`` on unchanged).
Sampling is the SDK's: parent-based always-on unless ``OTEL_TRACES_SAMPLER`` says otherwise.

A trace crosses three kinds of boundary, always as a W3C ``traceparent`` string:

- HTTP: the server instrumentation reads it, the httpx instrumentation writes it;
- the outbox: an event stores the ``traceparent`` of the span it was recorded in (its
  metadata, like the correlation id), so the relay publishing it later continues that trace;
- AMQP: the relay's ``publish`` span is injected into the message headers, and the consumer's
  ``process`` span is its child.

Spans are made with ``trace.get_tracer(__name__)`` at the moment they start (never a tracer
kept at import), so they follow whichever provider is installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import httpx
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Link, Span, SpanKind

from process_managers.tracing import (  # re-exported
    CORRELATION_ID,
    TRACEPARENT,
    context_of,
    current_traceparent,
    tracing,
)

NAMESPACE = "clinic"
UNTRACED_PATHS = ["^/health", "^/internal/health", "^/metrics"]
"""Probes and scrapes make no spans."""


class TracingSettings(Protocol):
    """What ``configure_tracing`` reads from the process's settings."""

    otlp_endpoint: str | None
    deployment_environment: str


def build_tracer_provider(service: str, settings: TracingSettings,
                          exporter: SpanExporter | None = None) -> TracerProvider | None:
    """A provider naming ``service`` and batching spans to ``exporter`` (default: OTLP/HTTP to
    ``settings.otlp_endpoint``); ``None`` when there is nowhere to send them."""
    if exporter is None:
        if not settings.otlp_endpoint:
            return None
        exporter = OTLPSpanExporter(endpoint=traces_url(settings.otlp_endpoint))
    resource = Resource.create({"service.name": service, "service.namespace": NAMESPACE,
                                "deployment.environment": settings.deployment_environment})
    provider = TracerProvider(resource=resource)  # shuts down (flushes) at process exit
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def configure_tracing(service: str, settings: TracingSettings) -> TracerProvider | None:
    """Install this process's provider (once, by the composition root); ``None``: tracing is off."""
    provider = build_tracer_provider(service, settings)
    if provider is not None:
        trace.set_tracer_provider(provider)
    return provider


def shutdown_tracing(provider: TracerProvider | None) -> None:
    """Flush the spans still batched and stop exporting (also done at exit if never called)."""
    if provider is not None:
        provider.shutdown()


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL under a collector's base endpoint, as the OTel variables mean it."""
    return endpoint if endpoint.rstrip("/").endswith("/v1/traces") else f"{endpoint.rstrip('/')}/v1/traces"


def tracer() -> trace.Tracer:
    return trace.get_tracer(__name__)


# The trace as a string (``current_traceparent``, ``context_of``: process_managers/tracing.py) --------

def links_to(traceparents: Iterable[str | None]) -> list[Link]:
    """A link to each distinct span among ``traceparents`` (a batch serving several traces)."""
    contexts = (context_of(value) for value in dict.fromkeys(traceparents))
    return [Link(trace.get_current_span(c).get_span_context()) for c in contexts if c is not None]


def event_name(topic: Any) -> str:
    """``Consultation.Requested`` from ``domain.consultation:Consultation.Requested``."""
    text = topic.decode() if isinstance(topic, bytes) else str(topic)
    return text.rsplit(":", 1)[-1]


# HTTP clients ------------------------------------------------------------------------------

def instrument_http_client(client: httpx.Client) -> httpx.Client:
    """A client span per request, and the current trace sent on in ``traceparent``, when this process traces
    (a provider is installed before the client is made, as the composition root does); else the client as it
    is: the instrumentation's wrapper costs a request more than a span is worth with nothing to record."""
    if tracing():
        HTTPXClientInstrumentor().instrument_client(client)
    return client


# AMQP ---------------------------------------------------------------------------------------

@contextmanager
def publish_span(headers: dict[str, Any], exchange: str, routing_key: str, message_id: str | None) -> Iterator[Span]:
    """The relay's PRODUCER span, child of the trace the event was recorded in; its own context
    replaces ``headers["traceparent"]`` (unchanged when this process does not trace)."""
    if not tracing():
        yield trace.INVALID_SPAN
        return
    attributes = _messaging(headers, "send", exchange, message_id) | {
        "messaging.rabbitmq.destination.routing_key": routing_key}
    with tracer().start_as_current_span(f"publish {event_name(headers.get('topic'))}", kind=SpanKind.PRODUCER,
                                        context=context_of(headers.get(TRACEPARENT)), attributes=attributes) as span:
        headers[TRACEPARENT] = current_traceparent() or headers.get(TRACEPARENT)
        yield span


@contextmanager
def consumer_span(headers: Mapping[str, Any] | None, queue: str, message_id: str | None) -> Iterator[Span]:
    """The consumer's CONSUMER span, child of the publisher's span named in the headers."""
    if not tracing():
        yield trace.INVALID_SPAN
        return
    headers = headers or {}
    with tracer().start_as_current_span(f"process {event_name(headers.get('topic'))}", kind=SpanKind.CONSUMER,
                                        context=context_of(headers.get(TRACEPARENT)),
                                        attributes=_messaging(headers, "process", queue, message_id)) as span:
        yield span


def _messaging(headers: Mapping[str, Any], operation: str, destination: str, message_id: str | None) -> dict[str, Any]:
    attributes = {"messaging.system": "rabbitmq", "messaging.operation.type": operation,
                  "messaging.destination.name": destination, "messaging.message.id": message_id,
                  "clinic.event.topic": headers.get("topic"), CORRELATION_ID: headers.get("correlation_id"),
                  "clinic.saga_id": headers.get("saga_id")}
    return {key: value.decode() if isinstance(value, bytes) else value
            for key, value in attributes.items() if value is not None}


# HTTP servers ------------------------------------------------------------------------------

def name_server_span(scope: Mapping[str, Any]) -> None:
    """Once routed, inside the server span: name it ``METHOD /route/{template}`` and tag it
    with the request's correlation id."""
    span = trace.get_current_span()
    if not span.is_recording() or span.kind != SpanKind.SERVER:  # type: ignore[attr-defined]
        return
    template = scope.get("path_template")
    if template:
        span.update_name(f"{scope.get('method', '')} {template}".strip())
        span.set_attribute("http.route", template)
    correlation_id = scope.get("state", {}).get("correlation_id")
    if correlation_id:
        span.set_attribute(CORRELATION_ID, correlation_id)
