"""Slot invariants under any sequence of hold, book, release, close and time passing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import reduce
from uuid import uuid4

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from domain.base import DomainError
from domain.slot import Slot, SlotStatus

BOOKINGS = [uuid4() for _ in range(3)]
bookings = st.sampled_from(BOOKINGS)
minutes = st.integers(min_value=1, max_value=20)


def state(aggregate) -> dict:
    return {k: v for k, v in aggregate.__dict__.items() if k != "_pending_events"}


class SlotMachine(RuleBasedStateMachine):
    @initialize()
    def open_slot(self) -> None:
        self.now = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)
        self.slot = Slot(doctor_id=uuid4(), start=datetime(2027, 1, 4, 9, tzinfo=UTC), duration_minutes=30)
        self.events = list(self.slot.collect_events())

    def attempt(self, command, *args) -> None:
        try:
            command(*args)
        except DomainError:
            pass
        self.events.extend(self.slot.collect_events())

    @rule(booking=bookings, ttl=minutes)
    def hold(self, booking, ttl) -> None:
        self.attempt(self.slot.hold, booking, self.now + timedelta(minutes=ttl), self.now)

    @rule(booking=bookings)
    def book(self, booking) -> None:
        self.attempt(self.slot.book, booking)

    @rule(booking=bookings)
    def release(self, booking) -> None:
        self.attempt(self.slot.release, booking, "released")

    @rule()
    def close(self) -> None:
        self.attempt(self.slot.close)

    @rule(elapsed=minutes)
    def advance_clock(self, elapsed) -> None:
        self.now += timedelta(minutes=elapsed)

    @invariant()
    def never_booked_by_two_bookings(self) -> None:
        booked_by = None
        for event in self.events:
            if isinstance(event, Slot.Booked):
                assert booked_by in (None, event.booking_id), "booked by a second booking"
                booked_by = event.booking_id
            elif isinstance(event, Slot.Released) and event.booking_id == booked_by:
                booked_by = None

    @invariant()
    def status_agrees_with_booking_id(self) -> None:
        if self.slot.status in (SlotStatus.OPEN, SlotStatus.CLOSED):
            assert self.slot.booking_id is None
        else:
            assert self.slot.booking_id is not None

    @invariant()
    def rebuilt_from_events_equals_live(self) -> None:
        rebuilt = reduce(lambda aggregate, event: event.mutate(aggregate), self.events, None)
        assert state(rebuilt) == state(self.slot)


SlotMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)
TestSlotMachine = SlotMachine.TestCase
