"""Slot rules: open → held (with expiry) → booked, or released; closed.

The commands' tests are given a slot's history (replayed through its mutators), run one command
and check the events it records (tests/kit/gwt.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest

from domain.slot import (
    Slot,
    SlotInUseError,
    SlotNotHeldError,
    SlotStatus,
    SlotUnavailableError,
    slot_id_for,
)
from tests.kit import given, that
from tests.kit.gwt import Given

DOCTOR = uuid4()
START = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
NOW = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)
EXPIRES = NOW + timedelta(minutes=10)
A, B = uuid4(), uuid4()

OPENED = that(Slot.Opened, doctor_id=DOCTOR, start=START, duration_minutes=30)


def held_by(booking):
    return (OPENED, that(Slot.Held, booking_id=booking, expires_at=EXPIRES))


def booked_by(booking):
    return (*held_by(booking), that(Slot.Booked, booking_id=booking))


HISTORIES = {
    "open": (OPENED,),
    "held": held_by(A),
    "booked": booked_by(A),
    "closed": (OPENED, Slot.Closed),
}


def a_slot(history: str) -> Given:
    """Given: a slot with this history (held and booked by booking A)."""
    return given(*HISTORIES[history])


# Identity and opening


def test_given_same_doctor_and_instant_in_another_offset_when_id_derived_then_same_id():
    # given
    paris = START.astimezone(timezone(timedelta(hours=1)))
    # when / then
    assert slot_id_for(DOCTOR, paris) == slot_id_for(DOCTOR, START)


def test_given_different_start_when_id_derived_then_different_id():
    # given / when / then
    assert slot_id_for(DOCTOR, START + timedelta(minutes=30)) != slot_id_for(DOCTOR, START)


def test_given_nothing_when_opened_then_opened_event_and_open_slot_with_derived_id():
    # when
    slot = Slot(doctor_id=DOCTOR, start=START, duration_minutes=30)
    # then
    [opened] = slot.collect_events()
    assert isinstance(opened, Slot.Opened)
    assert (opened.doctor_id, opened.start, opened.duration_minutes) == (DOCTOR, START, 30)
    assert slot.id == slot_id_for(DOCTOR, START)
    assert slot.status == SlotStatus.OPEN
    assert slot.booking_id is None
    assert slot.end == START + timedelta(minutes=30)


@pytest.mark.parametrize("duration", [0, -15])
def test_given_nothing_when_opened_with_non_positive_duration_then_refused(duration):
    # when / then
    with pytest.raises(ValueError):
        Slot(doctor_id=DOCTOR, start=START, duration_minutes=duration)


def test_given_nothing_when_opened_with_naive_start_then_refused():
    # when / then
    with pytest.raises(ValueError):
        Slot(doctor_id=DOCTOR, start=START.replace(tzinfo=None), duration_minutes=30)


# Holding


def test_given_open_slot_when_held_then_held_with_expiry():
    slot = a_slot("open").when(lambda s: s.hold(A, EXPIRES, now=NOW)).then(
        that(Slot.Held, booking_id=A, expires_at=EXPIRES))
    assert (slot.status, slot.booking_id, slot.hold_expires_at) == (SlotStatus.HELD, A, EXPIRES)


def test_given_held_slot_when_same_booking_holds_again_then_no_event():
    slot = a_slot("held").when(lambda s: s.hold(A, EXPIRES + timedelta(minutes=5), now=NOW)).then_nothing()
    assert slot.hold_expires_at == EXPIRES


def test_given_held_slot_when_another_booking_holds_then_refused():
    a_slot("held").when(lambda s: s.hold(B, EXPIRES, now=NOW + timedelta(minutes=5))).then_refused(
        SlotUnavailableError)


def test_given_expired_hold_when_another_booking_holds_then_held_by_it():
    slot = a_slot("held").when(
        lambda s: s.hold(B, EXPIRES + timedelta(minutes=10), now=EXPIRES + timedelta(seconds=1)),
    ).then(that(Slot.Held, booking_id=B))
    assert slot.booking_id == B


def test_given_booked_slot_when_another_booking_holds_then_refused():
    a_slot("booked").when(lambda s: s.hold(B, EXPIRES, now=EXPIRES + timedelta(hours=1))).then_refused(
        SlotUnavailableError)


def test_given_closed_slot_when_held_then_refused():
    a_slot("closed").when(lambda s: s.hold(A, EXPIRES, now=NOW)).then_refused(SlotUnavailableError)


def test_given_open_slot_when_held_with_naive_expiry_then_refused():
    a_slot("open").when(lambda s: s.hold(A, EXPIRES.replace(tzinfo=None), now=NOW)).then_refused(ValueError)


def test_given_open_slot_when_held_with_naive_now_then_refused():
    a_slot("open").when(lambda s: s.hold(A, EXPIRES, now=NOW.replace(tzinfo=None))).then_refused(ValueError)


# Booking


def test_given_held_slot_when_holder_books_then_booked():
    slot = a_slot("held").when(lambda s: s.book(A)).then(that(Slot.Booked, booking_id=A))
    assert (slot.status, slot.booking_id) == (SlotStatus.BOOKED, A)


def test_given_held_slot_when_another_booking_books_then_refused():
    a_slot("held").when(lambda s: s.book(B)).then_refused(SlotNotHeldError)


def test_given_open_slot_when_booked_then_refused():
    a_slot("open").when(lambda s: s.book(A)).then_refused(SlotNotHeldError)


def test_given_booked_slot_when_holder_books_again_then_no_event():
    slot = a_slot("booked").when(lambda s: s.book(A)).then_nothing()
    assert slot.status == SlotStatus.BOOKED


# Releasing


@pytest.mark.parametrize("history", ["held", "booked"])
def test_given_taken_slot_when_holder_releases_then_released_and_open(history):
    slot = a_slot(history).when(lambda s: s.release(A, reason="cancelled")).then(
        that(Slot.Released, booking_id=A, reason="cancelled"))
    assert (slot.status, slot.booking_id, slot.hold_expires_at) == (SlotStatus.OPEN, None, None)


@pytest.mark.parametrize("history", ["held", "booked"])
def test_given_taken_slot_when_another_booking_releases_then_no_event(history):
    slot = a_slot(history).when(lambda s: s.release(B, reason="cancelled")).then_nothing()
    assert slot.booking_id == A


# Closing


def test_given_open_slot_when_closed_then_closed():
    slot = a_slot("open").when(Slot.close).then(Slot.Closed)
    assert (slot.status, slot.booking_id) == (SlotStatus.CLOSED, None)


@pytest.mark.parametrize("history", ["held", "booked"])
def test_given_taken_slot_when_closed_then_refused(history):
    a_slot(history).when(Slot.close).then_refused(SlotInUseError)


def test_given_closed_slot_when_closed_again_then_no_event():
    a_slot("closed").when(Slot.close).then_nothing()
