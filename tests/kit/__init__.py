"""The test kit: a configurable registry fake, ``eventually``, given/when/then for aggregates,
and a base for Hypothesis state machines over one aggregate. See docs/testing.md."""

from tests.kit.eventually import eventually, eventually_async
from tests.kit.gwt import given, that
from tests.kit.registry import FakeRegistry

__all__ = ["FakeRegistry", "eventually", "eventually_async", "given", "that"]
