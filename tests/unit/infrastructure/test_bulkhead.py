"""The bulkhead: at most N calls in flight; the next one fails fast."""

from __future__ import annotations

import threading
import time

import pytest

from infrastructure.resilience import Bulkhead, BulkheadFullError

WAIT = 5.0


def test_n_plus_one_concurrent_calls_one_fails_fast():
    bulkhead = Bulkhead("registry", max_concurrent=3, acquire_timeout=0.01)
    inside = threading.Barrier(3 + 1, timeout=WAIT)  # the three holders and this test
    release = threading.Event()

    def hold() -> None:
        with bulkhead.slot():
            inside.wait()
            assert release.wait(WAIT)

    holders = [threading.Thread(target=hold) for _ in range(3)]
    for thread in holders:
        thread.start()
    inside.wait()
    assert bulkhead.in_flight == 3
    started = time.monotonic()
    with pytest.raises(BulkheadFullError, match="3 calls in flight"):
        with bulkhead.slot():
            pytest.fail("the fourth call must not run")
    assert time.monotonic() - started < 1.0
    release.set()
    for thread in holders:
        thread.join(WAIT)
    assert bulkhead.in_flight == 0
    with bulkhead.slot():  # slots are given back, also by calls that raised
        assert bulkhead.in_flight == 1


def test_a_slot_is_released_when_the_call_raises():
    bulkhead = Bulkhead("registry", max_concurrent=1, acquire_timeout=0)
    with pytest.raises(RuntimeError):
        with bulkhead.slot():
            raise RuntimeError("boom")
    with bulkhead.slot():
        pass


def test_a_waiting_caller_gets_a_slot_freed_within_its_timeout():
    bulkhead = Bulkhead("registry", max_concurrent=1, acquire_timeout=WAIT)
    holding, release, got = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        with bulkhead.slot():
            holding.set()
            assert release.wait(WAIT)

    def wait_for_slot() -> None:
        with bulkhead.slot():
            got.set()

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(WAIT)
    waiter = threading.Thread(target=wait_for_slot)
    waiter.start()
    release.set()
    assert got.wait(WAIT)
    holder.join(WAIT)
    waiter.join(WAIT)


def test_at_least_one_slot():
    with pytest.raises(ValueError):
        Bulkhead("registry", max_concurrent=0)
