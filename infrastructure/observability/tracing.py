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

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

import httpx
from opentelemetry import trace
from opentelemetry.context import Context, attach, detach
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from infrastructure.event_store import storage_backend
from process_managers.spans import install_spans
from projections.spans import install_batch_spans

TRACEPARENT = "traceparent"
CORRELATION_ID = "clinic.correlation_id"
NAMESPACE = "clinic"
UNTRACED_PATHS = ["^/health", "^/internal/health", "^/metrics"]
"""Probes and scrapes make no spans."""


class TracingSettings(Protocol):
    """What ``configure_tracing`` reads from the process's settings."""

    @property
    def otlp_endpoint(self) -> str | None: ...

    @property
    def deployment_environment(self) -> str: ...


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
    """Install this process's provider (once, by the composition root) and the spans of the process managers
    and projections over it; ``None``: tracing is off (their spans then pass stored contexts on)."""
    provider = build_tracer_provider(service, settings)
    if provider is not None:
        trace.set_tracer_provider(provider)
    install_spans(OpenTelemetrySpans())
    install_batch_spans(OpenTelemetrySpans())
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


# The trace as a string -------------------------------------------------------------------------

_W3C = TraceContextTextMapPropagator()


def tracing() -> bool:
    """Whether this process records spans (a provider is installed). When it does not, no span is started
    and no attribute built: the stored trace context passes on unchanged, as the no-op API would pass it."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or ``None`` outside any trace."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get(TRACEPARENT)


def context_of(traceparent: Any) -> Context | None:
    """A context whose parent span is ``traceparent`` (``None``: absent or malformed)."""
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("latin-1")
    if not isinstance(traceparent, str) or not traceparent:
        return None
    context = _W3C.extract({TRACEPARENT: traceparent}, context=Context())
    return context if trace.get_current_span(context).get_span_context().is_valid else None


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


# Events: processing, recording, saga steps, projection batches ----------------------------------

_DB_SYSTEMS = {"postgres": "postgresql"}
"""OpenTelemetry's ``db.system`` where it differs from our name of the backend."""
MAX_LINKS = 64
"""A projection batch of up to 1000 events links to at most this many of their spans."""
_batch_links: ContextVar[tuple[str | None, ...]] = ContextVar("batch_links", default=())


class OpenTelemetrySpans:
    """The process managers' and projections' spans (their ports: ``process_managers/spans.py``,
    ``projections/spans.py``) in OpenTelemetry. An event carries the ``traceparent`` of the span it was
    recorded in; a follower processing it continues that trace: inside a consumer's span (distributed
    mode) that span is the processing span; elsewhere (the embedded runner) a ``process`` span starts as
    a child of the stored context. Not tracing: no span, no attribute, the stored context passed on."""

    @contextmanager
    def processing(self, follower: str, domain_event: Any) -> Iterator[str | None]:
        if trace.get_current_span().get_span_context().is_valid:  # a consumer's span already
            yield current_traceparent()
            return
        if not tracing():
            yield getattr(domain_event, TRACEPARENT, None)
            return
        name = type(domain_event).__qualname__
        attributes = {"clinic.follower": follower, "clinic.event.topic": name,
                      CORRELATION_ID: getattr(domain_event, "correlation_id", None)}
        with tracer().start_as_current_span(
                f"process {name}", context=context_of(getattr(domain_event, TRACEPARENT, None)),
                attributes={key: value for key, value in attributes.items() if value is not None}):
            yield current_traceparent()

    @contextmanager
    def recording(self, app: Any, processing_event: Any) -> Iterator[None]:
        """``eventstore.append``; for a batch (``in_batch``), in the first job's trace, linked to the others'."""
        if not tracing():
            yield
            return
        events = processing_event.events
        attributes = {"eventstore.application": app.name, "eventstore.events": len(events),
                      "eventstore.topics": sorted({type(event).__qualname__ for event in events}),
                      "db.system": db_system(app.recorder)}
        with tracer().start_as_current_span("eventstore.append", attributes=attributes,
                                            links=links_to(_batch_links.get())):
            yield

    @contextmanager
    def in_batch(self, traceparents: Sequence[str | None]) -> Iterator[None]:
        if not tracing() or not traceparents:
            yield
            return
        first, others = context_of(traceparents[0]), tuple(t for t in traceparents[1:] if t != traceparents[0])
        token = attach(first) if first is not None else None
        links = _batch_links.set(others)
        try:
            yield
        finally:
            _batch_links.reset(links)
            if token is not None:
                detach(token)

    @contextmanager
    def saga(self, step: str, parent_traceparent: str | None = None) -> Iterator[SagaStepSpan]:
        if not tracing():
            yield SagaStepSpan(trace.INVALID_SPAN)
            return
        with tracer().start_as_current_span(f"saga.{step}", context=context_of(parent_traceparent)) as span:
            yield SagaStepSpan(span)

    def current_traceparent(self) -> str | None:
        return current_traceparent()

    @contextmanager
    def batch(self, store: Any, projection: str, ops: int, traceparents: Sequence[Any]) -> Iterator[None]:
        """``redis.apply_batch`` (or ``<db system>.apply_batch``): a projection's ops and position, written. A
        batch of one trace is written in it; one serving several starts its own and links to each."""
        if not tracing():
            yield
            return
        system = getattr(store, "db_system", type(store).__name__)
        contexts = list({c.span_id: c for c in map(_span_context, traceparents) if c is not None}.values())
        one_trace = len({c.trace_id for c in contexts}) == 1
        parent = trace.set_span_in_context(trace.NonRecordingSpan(contexts[-1]), Context()) if one_trace else None
        links = [] if one_trace else [Link(c) for c in contexts[:MAX_LINKS]]
        attributes = {"db.system": system, "projection.name": projection, "projection.ops": ops,
                      "projection.events": len(traceparents)}
        with tracer().start_as_current_span(f"{system}.apply_batch", context=parent, links=links,
                                            attributes=attributes):
            yield


class SagaStepSpan:
    """A ``saga.<step>`` span, described by where the step left its sagas."""

    def __init__(self, span: Span) -> None:
        self.span = span

    def describe_sagas(self, sagas: Iterable[Any]) -> None:
        """The saga, its consultation and where the step left it (``saga.outcome``, ``rejection.reason``)."""
        if not self.span.is_recording():
            return
        self.span.set_attribute("saga.outcome", "unchanged")
        for saga in sagas:
            self.span.set_attributes({"saga.id": str(saga.id), "consultation.id": str(saga.consultation_id),
                                      "saga.outcome": str(saga.state)})
            if getattr(saga, "rejection_reason", None):
                self.span.set_attribute("rejection.reason", saga.rejection_reason)


def db_system(recorder: Any) -> str:
    """``postgresql``, ``sqlite``, ``memory`` or ``sqlalchemy``: where ``recorder`` writes."""
    backend = storage_backend(recorder)
    return _DB_SYSTEMS.get(backend, backend)


def _span_context(traceparent: Any) -> trace.SpanContext | None:
    context = context_of(traceparent)
    return trace.get_current_span(context).get_span_context() if context is not None else None
