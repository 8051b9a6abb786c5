"""A base for Hypothesis state machines over one aggregate.

A subclass starts its aggregate in an ``@initialize`` rule (``self.start(aggregate)``) and runs
commands in its rules through ``self.attempt(method, *args)`` or ``self.act(command)``: a command the domain refuses (a
``DomainError``) is part of the exploration, not a failure, and every event the aggregate records
is kept in ``self.events``. Two invariants hold for every aggregate and come with the base:

- rebuilt from its events through their mutators, the aggregate equals the live one;
- its events' versions follow one another from the first, and the aggregate's version is the last.

The run's size comes from the Hypothesis profile (tests/conftest.py): a machine names no
``max_examples`` of its own unless it is too slow for the profile's budget.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from typing import Any

from hypothesis.stateful import RuleBasedStateMachine, invariant

from domain.base import DomainError


def state(aggregate: Any) -> dict[str, Any]:
    """What an aggregate holds, short of the events it has not yet handed over."""
    return {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}


class AggregateMachine(RuleBasedStateMachine):
    """Rules act on ``self.aggregate`` through ``attempt``; ``self.events`` is its whole history."""

    refusals: tuple[type[BaseException], ...] = (DomainError,)
    """What a command may raise when the aggregate's rules refuse it."""

    aggregate: Any = None
    events: list[Any]

    def start(self, aggregate: Any) -> None:
        self.aggregate = aggregate
        self.events = list(aggregate.collect_events())

    def attempt(self, command: Callable[..., Any], *args: Any) -> bool:
        """Run ``command(*args)`` (e.g. ``self.attempt(self.aggregate.hold, booking, expires, now)``);
        keep the events it records. False when the domain refused it."""
        try:
            command(*args)
            return True
        except self.refusals:
            return False
        finally:
            self.events.extend(self.aggregate.collect_events())

    def act(self, command: Callable[[Any], Any]) -> bool:
        """Run a command that takes the aggregate (one drawn from tests/kit/strategies.py)."""
        return self.attempt(command, self.aggregate)

    @invariant()
    def rebuilt_from_events_equals_live(self) -> None:
        if self.aggregate is not None:
            rebuilt = reduce(lambda aggregate, event: event.mutate(aggregate), self.events, None)
            assert state(rebuilt) == state(self.aggregate)

    @invariant()
    def versions_follow_one_another(self) -> None:
        if self.aggregate is not None:
            assert [event.originator_version for event in self.events] == list(range(1, len(self.events) + 1))
            assert self.aggregate.version == len(self.events)
