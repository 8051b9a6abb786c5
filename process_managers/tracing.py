"""Spans of processing and recording events, and the trace context as a ``traceparent`` string.

An event carries the ``traceparent`` of the span it was recorded in (``EventMetadata``). A
follower processing it continues that trace: inside a consumer's span (distributed mode) that
span is the processing span; elsewhere (the embedded runner) a ``process`` span starts as a
child of the stored context. Tracers are looked up when a span starts, so spans follow
whichever provider the composition root installed (none: the API's no-op, which still passes
the stored context on).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from eventsourcing.application import ProcessingEvent
from opentelemetry import trace
from opentelemetry.context import Context, attach, detach
from opentelemetry.trace import Link, Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
CORRELATION_ID = "clinic.correlation_id"
_W3C = TraceContextTextMapPropagator()
Policy = Callable[[Any, Any, ProcessingEvent], None]
_DB_SYSTEMS = {"eventsourcing.postgres": "postgresql", "eventsourcing.sqlite": "sqlite",
               "eventsourcing.popo": "memory", "eventsourcing_sqlalchemy": "sqlalchemy"}


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


@contextmanager
def processing_span(follower: str, domain_event: Any) -> Iterator[str | None]:
    """The span ``follower`` processes ``domain_event`` in; yields its ``traceparent``, for the
    events the processing records."""
    if trace.get_current_span().get_span_context().is_valid:  # a consumer's span already
        yield current_traceparent()
        return
    if not tracing():
        yield getattr(domain_event, TRACEPARENT, None)
        return
    attributes = {"clinic.follower": follower, "clinic.event.topic": type(domain_event).__qualname__,
                  CORRELATION_ID: getattr(domain_event, "correlation_id", None)}
    with trace.get_tracer(__name__).start_as_current_span(
            f"process {type(domain_event).__qualname__}", context=context_of(getattr(domain_event, TRACEPARENT, None)),
            attributes={key: value for key, value in attributes.items() if value is not None}):
        yield current_traceparent()


_batch_links: ContextVar[tuple[str | None, ...]] = ContextVar("batch_links", default=())


@contextmanager
def recording_span(app: Any, processing_event: ProcessingEvent) -> Iterator[None]:
    """``eventstore.append``: one transaction of ``app``'s events (and tracking record); for a batch
    (``in_batch_trace``), in the first job's trace and linked to the others'."""
    if not tracing():
        yield
        return
    events = processing_event.events
    attributes = {"eventstore.application": app.name, "eventstore.events": len(events),
                  "eventstore.topics": sorted({type(event).__qualname__ for event in events}),
                  "db.system": db_system(app.recorder)}
    links = [Link(trace.get_current_span(c).get_span_context())
             for c in map(context_of, dict.fromkeys(_batch_links.get())) if c is not None]
    with trace.get_tracer(__name__).start_as_current_span("eventstore.append", attributes=attributes, links=links):
        yield


@contextmanager
def in_batch_trace(traceparents: Sequence[str | None]) -> Iterator[None]:
    """Within the block, the current trace is the first of ``traceparents`` (the jobs of a batch being
    recorded), and an ``eventstore.append`` links to the others."""
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


def db_system(recorder: Any) -> str:
    """``postgresql``, ``sqlite``, ``memory`` or ``sqlalchemy``: where ``recorder`` writes."""
    module = type(recorder).__module__
    return next((system for prefix, system in _DB_SYSTEMS.items() if module.startswith(prefix)), module)


@contextmanager
def saga_span(step: str, parent_traceparent: str | None = None) -> Iterator[Span]:
    """``saga.<step>``: one step or compensation of a booking saga (in the current trace, or, for
    the timer, in the trace the saga started in)."""
    if not tracing():
        yield trace.INVALID_SPAN
        return
    with trace.get_tracer(__name__).start_as_current_span(f"saga.{step}",
                                                          context=context_of(parent_traceparent)) as span:
        yield span


def describe_sagas(span: Span, sagas: Iterable[Any]) -> None:
    """The saga, its consultation and where the step left it (``saga.outcome``, ``rejection.reason``)."""
    if not span.is_recording():
        return
    span.set_attribute("saga.outcome", "unchanged")
    for saga in sagas:
        span.set_attributes({"saga.id": str(saga.id), "consultation.id": str(saga.consultation_id),
                             "saga.outcome": str(saga.state)})
        if getattr(saga, "rejection_reason", None):
            span.set_attribute("rejection.reason", saga.rejection_reason)


def saga_step(step: str) -> Callable[[Policy], Policy]:
    """A saga policy's work as the span ``saga.<step>``, described by the saga it changed."""

    def decorate(policy: Policy) -> Policy:
        @functools.wraps(policy)
        def traced(self: Any, domain_event: Any, processing_event: ProcessingEvent) -> None:
            with saga_span(step) as span:
                policy(self, domain_event, processing_event)
                describe_sagas(span, processing_event.aggregates.values())

        return traced

    return decorate
