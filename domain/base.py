"""The base aggregate: every event carries its metadata and the library's timestamp."""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import Any

from eventsourcing.domain import Aggregate

from domain.metadata import current_metadata


class ClinicAggregate(Aggregate):
    """An aggregate whose events are stamped from the current ``EventMetadata``."""

    class Event(Aggregate.Event):
        _: KW_ONLY
        correlation_id: str | None = None
        causation_id: str | None = None
        saga_id: str | None = None
        actor: str | None = None
        traceparent: str | None = None

        def mutate(self, aggregate: Any) -> Any:
            # Mutators see the event's own time as ``modified_on`` (the library sets it after).
            if aggregate is not None:
                aggregate.modified_on = self.timestamp
            return super().mutate(aggregate)

    class Created(Event, Aggregate.Created):
        pass

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        kwargs.update(current_metadata().as_event_fields())
        super().trigger_event(event_class, **kwargs)

    @classmethod
    def _create(cls, event_class: Any, *, id: Any = None, **kwargs: Any) -> Any:  # noqa: A002
        kwargs.update(current_metadata().as_event_fields())
        return super()._create(event_class, id=id, **kwargs)


class DomainError(Exception):
    """A business rule refused a command."""


class NotFoundError(DomainError):
    """No aggregate has this id."""
