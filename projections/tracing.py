"""The span of one projection batch write, in the trace of the events it applies.

A batch of one trace (one booking's events) is written in that trace: the span's parent is the
last event's stored ``traceparent``. A batch serving several traces starts its own trace and
links to each event's context instead (a span has one parent). No tracing configured: the
nothing at all (not even the context and attributes).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

MAX_LINKS = 64
"""A batch of up to 1000 events links to at most this many of their spans."""
_W3C = TraceContextTextMapPropagator()


@contextmanager
def batch_span(store: Any, projection: str, ops: int, traceparents: Sequence[Any]) -> Iterator[None]:
    """``redis.apply_batch`` (or ``<db system>.apply_batch``): a projection's ops and position, written."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):  # not tracing: nothing to build
        yield
        return
    system = getattr(store, "db_system", type(store).__name__)
    contexts = list({c.span_id: c for c in map(_span_context, traceparents) if c is not None}.values())
    one_trace = len({c.trace_id for c in contexts}) == 1
    parent = trace.set_span_in_context(trace.NonRecordingSpan(contexts[-1]), Context()) if one_trace else None
    links = [] if one_trace else [Link(c) for c in contexts[:MAX_LINKS]]
    attributes = {"db.system": system, "projection.name": projection, "projection.ops": ops,
                  "projection.events": len(traceparents)}
    with trace.get_tracer(__name__).start_as_current_span(f"{system}.apply_batch", context=parent, links=links,
                                                          attributes=attributes):
        yield


def _span_context(traceparent: Any) -> SpanContext | None:
    if not isinstance(traceparent, str) or not traceparent:
        return None
    context = trace.get_current_span(_W3C.extract({"traceparent": traceparent}, context=Context())).get_span_context()
    return context if context.is_valid else None
