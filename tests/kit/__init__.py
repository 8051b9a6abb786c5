"""The test kit: a configurable registry fake, ``eventually``, given/when/then for aggregates, a
base for Hypothesis state machines over one aggregate and strategies for the aggregates' commands
(``tests.kit.strategies``), and calls made to race (``tests.kit.concurrency``). See docs/testing.md."""

from tests.kit.eventually import eventually, eventually_async
from tests.kit.gwt import given, that
from tests.kit.machines import AggregateMachine
from tests.kit.registry import FakeRegistry

__all__ = ["AggregateMachine", "FakeRegistry", "eventually", "eventually_async", "given", "that"]
