"""Given / when / then for event-sourced aggregates (and the booking saga, an aggregate too).

    given(that(Consultation.Requested, patient_id=p, doctor_id=d, start=START, reason="cough"),
          Consultation.Confirmed) \\
        .when(lambda c: c.cancel_by_patient("ill")) \\
        .then(that(Consultation.CancelledByPatient, reason="ill"))

``given(*history)`` replays a history into an aggregate through the events' own mutators, as the
library's repository does (``aggregate = None; for e in events: aggregate = e.mutate(aggregate)``).
Each item of the history is an event the test already has (e.g. from another aggregate's
``collect_events()``), or an event class, alone or with its fields (``that(Event, **fields)``):
the kit fills in what the library would — the aggregate's id (from the aggregate's ``create_id``
for a created event), the next version, a timestamp, the aggregate's topic.

``.when(command)`` takes the aggregate (``None`` when the history is empty) and acts on it; a
command that creates an aggregate returns it (``given().when(lambda _: Consultation(...))``).

``.then(*expected)`` runs the command, collects the events it recorded and checks their classes, in
order, and the fields each ``that(...)`` names; it returns the aggregate for any further check of
its state. ``.then()`` with nothing expects no event; ``.then_refused(Error)`` expects the
command to raise and to record nothing.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.domain import BaseAggregate, CanInitAggregate, CanMutateAggregate
from eventsourcing.utils import get_topic


@dataclass(frozen=True)
class That:
    """An event class and the fields a test cares about."""

    event_class: type[CanMutateAggregate[Any]]
    fields: dict[str, Any] = field(default_factory=dict)

    def mismatches(self, event: Any) -> list[str]:
        if type(event) is not self.event_class:
            return [f"expected {self}, got {describe(event)}"]
        return [f"{self.event_class.__qualname__}.{name}: expected {value!r}, got {getattr(event, name, '<missing>')!r}"
                for name, value in self.fields.items() if getattr(event, name, object()) != value]

    def build(self, aggregate: Any) -> CanMutateAggregate[Any]:
        """The event the library would have recorded next on ``aggregate`` (``None``: a new one)."""
        timestamp = self.event_class.create_timestamp()
        if issubclass(self.event_class, CanInitAggregate):
            if aggregate is not None:
                raise AssertionError(f"{self} creates an aggregate: it must come first in the history")
            aggregate_class = aggregate_class_of(self.event_class)
            return self.event_class(originator_id=self.fields.get("originator_id") or new_id(aggregate_class, self.fields),
                                    originator_version=aggregate_class.INITIAL_VERSION, timestamp=timestamp,
                                    originator_topic=get_topic(aggregate_class),
                                    **{k: v for k, v in self.fields.items() if k != "originator_id"})
        if aggregate is None:
            raise AssertionError(f"{self} needs an aggregate: start the history with a created event")
        return self.event_class(originator_id=aggregate.id, originator_version=aggregate.version + 1,
                                timestamp=timestamp, **self.fields)

    def __str__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.fields.items())
        return f"{self.event_class.__qualname__}({fields})"


def that(event_class: type[CanMutateAggregate[Any]], **fields: Any) -> That:
    """An event of ``event_class`` with these ``fields`` (to replay in ``given``, to expect in ``then``)."""
    return That(event_class, fields)


def given(*history: Any) -> Given:
    """The aggregate these events make (no event: no aggregate yet)."""
    return Given(tuple(history))


@dataclass(frozen=True)
class Given:
    history: tuple[Any, ...]

    def aggregate(self) -> Any:
        """Replay the history through the events' mutators, as a repository does."""
        aggregate = None
        for item in self.history:
            event = item if isinstance(item, CanMutateAggregate) else as_that(item).build(aggregate)
            aggregate = event.mutate(aggregate)
        return aggregate

    def when(self, command: Callable[[Any], Any]) -> When:
        return When(self, command)


@dataclass(frozen=True)
class When:
    given: Given
    command: Callable[[Any], Any]

    def run(self) -> tuple[Any, list[Any]]:
        """The aggregate after the command, and the events the command recorded."""
        aggregate = self.given.aggregate()
        returned = self.command(aggregate)
        if isinstance(returned, BaseAggregate):
            aggregate = returned  # a command that creates (or loads) an aggregate
        return aggregate, list(aggregate.collect_events()) if aggregate is not None else []

    def then(self, *expected: Any) -> Any:
        """The command records exactly these events (classes, in order; the fields each names)."""
        aggregate, events = self.run()
        wanted = [as_that(item) for item in expected]
        problems = ([f"expected {len(wanted)} event(s), got {len(events)}"] if len(events) != len(wanted) else
                    [problem for want, got in zip(wanted, events, strict=True) for problem in want.mismatches(got)])
        if problems:
            raise AssertionError("\n".join([*problems, f"  expected: {[str(w) for w in wanted]}",
                                            f"  recorded: {[describe(e) for e in events]}"]))
        return aggregate

    def then_nothing(self) -> Any:
        """The command records no event (e.g. an idempotent repeat)."""
        return self.then()

    def then_refused(self, error: type[BaseException], match: str | None = None) -> BaseException:
        """The command raises ``error`` and records nothing; returns the exception."""
        aggregate = self.given.aggregate()
        with pytest.raises(error, match=match) as raised:
            self.command(aggregate)
        if aggregate is not None:
            assert list(aggregate.collect_events()) == [], "a refused command recorded events"
        return raised.value


def as_that(item: Any) -> That:
    if isinstance(item, That):
        return item
    if isinstance(item, type) and issubclass(item, CanMutateAggregate):
        return That(item)
    raise TypeError(f"not an event, an event class or that(...): {item!r}")


def aggregate_class_of(event_class: type) -> type[BaseAggregate[Any]]:
    """The aggregate an event class is declared in (``Consultation.Requested`` → ``Consultation``)."""
    owner: Any = sys.modules[event_class.__module__]
    for name in event_class.__qualname__.split(".")[:-1]:
        owner = getattr(owner, name)
    if not (isinstance(owner, type) and issubclass(owner, BaseAggregate)):
        raise AssertionError(f"{event_class.__qualname__} is not declared inside an aggregate class")
    return owner


def new_id(aggregate_class: type[BaseAggregate[Any]], fields: dict[str, Any]) -> UUID:
    """The id the aggregate would have: its ``create_id`` given the created event's fields."""
    parameters = inspect.signature(aggregate_class.create_id).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return aggregate_class.create_id(**fields)
    return aggregate_class.create_id(**{p.name: fields[p.name] for p in parameters if p.name in fields})


def describe(event: Any) -> str:
    own = {k: v for k, v in vars(event).items()
           if k not in ("originator_id", "originator_version", "timestamp", "originator_topic") and v is not None}
    return f"{type(event).__qualname__}({', '.join(f'{k}={v!r}' for k, v in own.items())})"
