"""The chaos soak's schedule: seeded, bounded, one fault at a time, every kind before any repeats."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from interfaces.local_deployment.chaos import (
    FAULTS,
    OUTAGE_SECONDS,
    REGISTRY_DOWN_SECONDS,
    SETTLE_SECONDS,
    WARM_UP_SECONDS,
    schedule,
)
from interfaces.local_deployment.deployment import DEADLINE_SECONDS

seeds = st.integers(min_value=0, max_value=2**32)
minutes = st.floats(min_value=0.5, max_value=60, allow_nan=False)
every = st.floats(min_value=2, max_value=120, allow_nan=False)


@given(seeds, minutes, every)
def test_faults_come_one_at_a_time_inside_the_run_and_leave_it_time_to_settle(seed, length, spacing):
    injections = schedule(seed, length, spacing)
    assert [i.at for i in injections] == sorted(i.at for i in injections)
    for first, second in pairwise(injections):
        assert first.at + first.seconds < second.at  # repaired before the next starts
    for injection in injections:
        assert injection.at >= WARM_UP_SECONDS
        assert injection.at + injection.seconds <= length * 60 - SETTLE_SECONDS + 0.1


@given(seeds, minutes, every)
def test_every_kind_comes_once_before_any_comes_twice_and_lasts_as_its_kind_does(seed, length, spacing):
    injections = schedule(seed, length, spacing)
    kinds = [i.fault for i in injections]
    for start in range(0, len(kinds), len(FAULTS)):
        block = kinds[start:start + len(FAULTS)]
        assert len(set(block)) == len(block)
    for injection in injections:
        low, high = {"registry-down": REGISTRY_DOWN_SECONDS, "kill-worker": (0, 0), "poison": (0, 0)}.get(
            injection.fault, OUTAGE_SECONDS)
        assert low - 0.05 <= injection.seconds <= high + 0.05
        if injection.fault == "registry-down":
            assert injection.seconds > DEADLINE_SECONDS  # so the bookings meanwhile are compensated


@given(seeds, minutes, every)
def test_the_same_seed_gives_the_same_schedule(seed, length, spacing):
    assert schedule(seed, length, spacing) == schedule(seed, length, spacing)


def test_a_ten_minute_run_injects_every_kind_of_fault():
    assert {i.fault for i in schedule(1, 10)} == set(FAULTS)
