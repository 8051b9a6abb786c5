"""Who and what caused an event: filled from the request or message context.

Interfaces set the context once per request or message (``event_metadata``);
every event an aggregate triggers inside it is stamped with these values, so no
method has to thread them by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class EventMetadata:
    """Correlation, causation, saga and actor of the events triggered now.

    ``traceparent`` is the W3C trace context of the span the events are recorded in (a plain
    string: the domain knows nothing of tracing); whoever publishes or processes an event later
    continues that trace from it.
    """

    correlation_id: str | None = None
    causation_id: str | None = None
    saga_id: str | None = None
    actor: str | None = None
    traceparent: str | None = None

    def as_event_fields(self) -> dict[str, str | None]:
        return {
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "saga_id": self.saga_id,
            "actor": self.actor,
            "traceparent": self.traceparent,
        }


_current: ContextVar[EventMetadata] = ContextVar("event_metadata", default=EventMetadata())


def current_metadata() -> EventMetadata:
    """The metadata that events triggered in this context will carry."""
    return _current.get()


@contextmanager
def event_metadata(**changes: str | None) -> Iterator[EventMetadata]:
    """Stamp events triggered inside the block with these values (others inherited)."""
    metadata = replace(_current.get(), **changes)
    token = _current.set(metadata)
    try:
        yield metadata
    finally:
        _current.reset(token)


def event_reference(event: object) -> str:
    """How a causation id names an event: ``<originator id>@<version>``."""
    return f"{event.originator_id}@{event.originator_version}"  # type: ignore[attr-defined]


@contextmanager
def caused_by(event: object, actor: str, traceparent: str | None = None) -> Iterator[EventMetadata]:
    """Stamp what ``actor`` does in reaction to ``event``: same correlation and saga; ``traceparent``
    is the span processing it."""
    with event_metadata(
        correlation_id=getattr(event, "correlation_id", None),
        causation_id=event_reference(event),
        saga_id=getattr(event, "saga_id", None),
        actor=actor,
        traceparent=traceparent,
    ) as metadata:
        yield metadata
