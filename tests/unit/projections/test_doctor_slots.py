"""doctor_slots: given a slot's event, then exactly these hash and index writes."""

from __future__ import annotations

from uuid import UUID

import pytest

from domain.slot import SlotRequestRefused
from projections.doctor_slots import DoctorSlots
from projections.ops import AddToIndex, SetFields
from tests.unit.projections.events import BOOKING, DOCTOR, START_EPOCH, held, last_event, opened

projection = DoctorSlots()


def test_opening_writes_the_slot_and_indexes_it_by_day():
    slot, event = opened()
    assert projection.changes(event) == [
        SetFields(f"slot:{slot.id}", {"slot_id": str(slot.id), "doctor_id": str(DOCTOR),
                                      "start": "2027-01-05T23:30:00+00:00", "duration_minutes": "30",
                                      "status": "OPEN", "booking_id": ""}),
        AddToIndex(f"doctor:{DOCTOR}:slots:2027-01-05", str(slot.id), START_EPOCH),
    ]


def test_a_hold_names_its_booking():
    slot, event = held()
    assert projection.changes(event) == [SetFields(f"slot:{slot.id}", {"status": "HELD", "booking_id": str(BOOKING)})]


@pytest.mark.parametrize(("then", "fields"), [
    (lambda slot: slot.book(BOOKING), {"status": "BOOKED"}),
    (lambda slot: slot.release(BOOKING, "timeout"), {"status": "OPEN", "booking_id": ""}),
])
def test_booking_and_releasing_a_held_slot(then, fields):
    slot, _ = held()
    then(slot)
    assert projection.changes(last_event(slot)) == [SetFields(f"slot:{slot.id}", fields)]


def test_closing_an_open_slot():
    slot, _ = opened()
    slot.close()
    assert projection.changes(last_event(slot)) == [SetFields(f"slot:{slot.id}", {"status": "CLOSED"})]


def test_a_refusal_changes_no_slot():
    refusal = SlotRequestRefused(booking_id=BOOKING, slot_id=UUID(int=7), command="hold", reason="closed")
    assert projection.changes(last_event(refusal)) == []


def test_reads_scheduling():
    assert (projection.name, projection.leaders) == ("doctor_slots", ("Scheduling",))
