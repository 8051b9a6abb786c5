"""Slot rules: open → held (with expiry) → booked, or released; closed."""

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

DOCTOR = uuid4()
START = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
NOW = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)
EXPIRES = NOW + timedelta(minutes=10)
A, B = uuid4(), uuid4()


def open_slot() -> Slot:
    slot = Slot(doctor_id=DOCTOR, start=START, duration_minutes=30)
    slot.collect_events()
    return slot


def held_slot(booking=A) -> Slot:
    slot = open_slot()
    slot.hold(booking, EXPIRES, now=NOW)
    slot.collect_events()
    return slot


def booked_slot(booking=A) -> Slot:
    slot = held_slot(booking)
    slot.book(booking)
    slot.collect_events()
    return slot


def closed_slot() -> Slot:
    slot = open_slot()
    slot.close()
    slot.collect_events()
    return slot


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
    # given
    slot = open_slot()
    # when
    slot.hold(A, EXPIRES, now=NOW)
    # then
    [held] = slot.collect_events()
    assert isinstance(held, Slot.Held)
    assert (held.booking_id, held.expires_at) == (A, EXPIRES)
    assert (slot.status, slot.booking_id, slot.hold_expires_at) == (SlotStatus.HELD, A, EXPIRES)


def test_given_held_slot_when_same_booking_holds_again_then_no_event():
    # given
    slot = held_slot(A)
    # when
    slot.hold(A, EXPIRES + timedelta(minutes=5), now=NOW)
    # then
    assert slot.collect_events() == []
    assert slot.hold_expires_at == EXPIRES


def test_given_held_slot_when_another_booking_holds_then_refused():
    # given
    slot = held_slot(A)
    # when / then
    with pytest.raises(SlotUnavailableError):
        slot.hold(B, EXPIRES, now=NOW + timedelta(minutes=5))


def test_given_expired_hold_when_another_booking_holds_then_held_by_it():
    # given
    slot = held_slot(A)
    # when
    slot.hold(B, EXPIRES + timedelta(minutes=10), now=EXPIRES + timedelta(seconds=1))
    # then
    [held] = slot.collect_events()
    assert isinstance(held, Slot.Held)
    assert held.booking_id == B
    assert slot.booking_id == B


def test_given_booked_slot_when_another_booking_holds_then_refused():
    # given
    slot = booked_slot(A)
    # when / then
    with pytest.raises(SlotUnavailableError):
        slot.hold(B, EXPIRES, now=EXPIRES + timedelta(hours=1))


def test_given_closed_slot_when_held_then_refused():
    # given
    slot = closed_slot()
    # when / then
    with pytest.raises(SlotUnavailableError):
        slot.hold(A, EXPIRES, now=NOW)


def test_given_open_slot_when_held_with_naive_expiry_then_refused():
    # given
    slot = open_slot()
    # when / then
    with pytest.raises(ValueError):
        slot.hold(A, EXPIRES.replace(tzinfo=None), now=NOW)


def test_given_open_slot_when_held_with_naive_now_then_refused():
    # given
    slot = open_slot()
    # when / then
    with pytest.raises(ValueError):
        slot.hold(A, EXPIRES, now=NOW.replace(tzinfo=None))


# Booking


def test_given_held_slot_when_holder_books_then_booked():
    # given
    slot = held_slot(A)
    # when
    slot.book(A)
    # then
    [booked] = slot.collect_events()
    assert isinstance(booked, Slot.Booked)
    assert booked.booking_id == A
    assert (slot.status, slot.booking_id) == (SlotStatus.BOOKED, A)


def test_given_held_slot_when_another_booking_books_then_refused():
    # given
    slot = held_slot(A)
    # when / then
    with pytest.raises(SlotNotHeldError):
        slot.book(B)


def test_given_open_slot_when_booked_then_refused():
    # given
    slot = open_slot()
    # when / then
    with pytest.raises(SlotNotHeldError):
        slot.book(A)


def test_given_booked_slot_when_holder_books_again_then_no_event():
    # given
    slot = booked_slot(A)
    # when
    slot.book(A)
    # then
    assert slot.collect_events() == []
    assert slot.status == SlotStatus.BOOKED


# Releasing


@pytest.mark.parametrize("given", [held_slot, booked_slot])
def test_given_taken_slot_when_holder_releases_then_released_and_open(given):
    # given
    slot = given(A)
    # when
    slot.release(A, reason="cancelled")
    # then
    [released] = slot.collect_events()
    assert isinstance(released, Slot.Released)
    assert (released.booking_id, released.reason) == (A, "cancelled")
    assert (slot.status, slot.booking_id, slot.hold_expires_at) == (SlotStatus.OPEN, None, None)


@pytest.mark.parametrize("given", [held_slot, booked_slot])
def test_given_taken_slot_when_another_booking_releases_then_no_event(given):
    # given
    slot = given(A)
    # when
    slot.release(B, reason="cancelled")
    # then
    assert slot.collect_events() == []
    assert slot.booking_id == A


# Closing


def test_given_open_slot_when_closed_then_closed():
    # given
    slot = open_slot()
    # when
    slot.close()
    # then
    [closed] = slot.collect_events()
    assert isinstance(closed, Slot.Closed)
    assert (slot.status, slot.booking_id) == (SlotStatus.CLOSED, None)


@pytest.mark.parametrize("given", [held_slot, booked_slot])
def test_given_taken_slot_when_closed_then_refused(given):
    # given
    slot = given(A)
    # when / then
    with pytest.raises(SlotInUseError):
        slot.close()


def test_given_closed_slot_when_closed_again_then_no_event():
    # given
    slot = closed_slot()
    # when
    slot.close()
    # then
    assert slot.collect_events() == []
