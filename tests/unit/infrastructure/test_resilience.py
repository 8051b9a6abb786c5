"""Backoff: the waits of the loops that retry a lost connection or a failed step."""

from __future__ import annotations

from infrastructure.resilience import Backoff


def test_a_backoff_doubles_its_waits_up_to_the_most_and_starts_again_after_a_success():
    backoff = Backoff(0.2, 1.0)
    assert [backoff.next() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.delay == backoff.next() == 0.2


def test_a_jittered_backoff_waits_between_half_and_all_of_each_delay():
    backoff = Backoff(1.0, 8.0, jitter=True)
    for delay in (1.0, 2.0, 4.0, 8.0, 8.0):
        assert delay / 2 <= backoff.next() <= delay
