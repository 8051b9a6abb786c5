"""Slot invariants under any sequence of hold, book, release, close and time passing.

(The base machine adds: rebuilt from its events, a slot equals the live one; its versions follow
one another. The run's size is the Hypothesis profile's.)
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis.stateful import initialize, invariant, rule

from domain.slot import Slot, SlotStatus
from tests.kit.machines import AggregateMachine
from tests.kit.strategies import NOW, bookings, minutes, slot_commands, slots


class SlotMachine(AggregateMachine):
    @initialize(slot=slots)
    def open_slot(self, slot) -> None:
        self.now = NOW
        self.start(slot)

    @rule(booking=bookings, ttl=minutes)
    def hold_now(self, booking, ttl) -> None:
        self.attempt(self.aggregate.hold, booking, self.now + timedelta(minutes=ttl), self.now)

    @rule(command=slot_commands)
    def command(self, command) -> None:
        self.act(command)

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
        if self.aggregate.status in (SlotStatus.OPEN, SlotStatus.CLOSED):
            assert self.aggregate.booking_id is None
        else:
            assert self.aggregate.booking_id is not None


TestSlotMachine = SlotMachine.TestCase
