"""The spans of processing and recording events, and of a saga's steps: a port.

``spans()`` is the implementation the composition root installed (``install_spans``; OpenTelemetry's
is ``infrastructure.observability.tracing.OpenTelemetrySpans``). Until one is installed,
``PassThrough`` opens nothing and hands each event's stored ``traceparent`` on to the events its
processing records, which is what the OpenTelemetry API does when no provider is configured.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from eventsourcing.application import ProcessingEvent

Policy = Callable[[Any, Any, ProcessingEvent], None]


class SagaSpan(Protocol):
    """A step's span: told where the step left the sagas it changed."""

    def describe_sagas(self, sagas: Iterable[Any]) -> None: ...


class Spans(Protocol):
    def processing(self, follower: str, domain_event: Any) -> AbstractContextManager[str | None]:
        """The span ``follower`` processes ``domain_event`` in; yields the ``traceparent`` for the events
        the processing records."""

    def recording(self, app: Any, processing_event: ProcessingEvent) -> AbstractContextManager[None]:
        """One transaction of ``app``'s events (and tracking rows)."""

    def in_batch(self, traceparents: Sequence[str | None]) -> AbstractContextManager[None]:
        """Recording a batch whose jobs came in ``traceparents``: in the first's trace, linked to the others."""

    def saga(self, step: str, parent_traceparent: str | None = None) -> AbstractContextManager[SagaSpan]:
        """``saga.<step>``: one step or compensation of a saga (in the current trace, or in ``parent_traceparent``'s)."""

    def current_traceparent(self) -> str | None:
        """The ``traceparent`` of the current span (``None``: outside any trace)."""


class _NoSagaSpan:
    def describe_sagas(self, sagas: Iterable[Any]) -> None:
        pass


class PassThrough:
    """No spans: each event's stored trace context passes on unchanged."""

    @contextmanager
    def processing(self, follower: str, domain_event: Any) -> Iterator[str | None]:
        yield getattr(domain_event, "traceparent", None)

    @contextmanager
    def recording(self, app: Any, processing_event: ProcessingEvent) -> Iterator[None]:
        yield

    @contextmanager
    def in_batch(self, traceparents: Sequence[str | None]) -> Iterator[None]:
        yield

    @contextmanager
    def saga(self, step: str, parent_traceparent: str | None = None) -> Iterator[SagaSpan]:
        yield _NoSagaSpan()

    def current_traceparent(self) -> str | None:
        return None


_installed: list[Spans] = [PassThrough()]


def spans() -> Spans:
    """The installed implementation (``PassThrough`` until the composition root installs another)."""
    return _installed[0]


def install_spans(implementation: Spans | None) -> None:
    """Make ``implementation`` the process's spans (``None``: ``PassThrough`` again)."""
    _installed[0] = implementation if implementation is not None else PassThrough()


def saga_step(step: str) -> Callable[[Policy], Policy]:
    """A saga policy's work as the span ``saga.<step>``, described by the sagas it changed."""

    def decorate(policy: Policy) -> Policy:
        @functools.wraps(policy)
        def traced(self: Any, domain_event: Any, processing_event: ProcessingEvent) -> None:
            with spans().saga(step) as span:
                policy(self, domain_event, processing_event)
                span.describe_sagas(processing_event.aggregates.values())

        return traced

    return decorate
