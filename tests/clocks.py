"""A monotonic-seconds clock the test moves by hand (caches, breakers, rate limits without waiting)."""

from __future__ import annotations


class SecondsClock:
    """``clock()`` returns ``now``; the test sets or advances it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
