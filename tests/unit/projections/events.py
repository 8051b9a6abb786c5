"""Given: real aggregates' events, one command at a time, for the projections' unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from domain.consultation import Consultation
from domain.slot import Slot
from process_managers.booking_saga import BookingSaga

PATIENT = UUID(int=1)
DOCTOR = UUID(int=2)
BOOKING = UUID(int=3)
START = datetime(2027, 1, 5, 23, 30, tzinfo=UTC)
START_EPOCH = START.timestamp()
DEADLINE = datetime(2027, 1, 4, 8, 0, 30, tzinfo=UTC)


def last_event(aggregate: Any) -> Any:
    """The one event the last command triggered."""
    (event,) = aggregate.collect_events()
    return event


def requested() -> tuple[Consultation, Any]:
    consultation = Consultation(patient_id=PATIENT, doctor_id=DOCTOR, start=START, reason="check-up")
    return consultation, last_event(consultation)


def confirmed() -> tuple[Consultation, Any]:
    consultation, _ = requested()
    consultation.confirm()
    return consultation, last_event(consultation)


def opened() -> tuple[Slot, Any]:
    slot = Slot(doctor_id=DOCTOR, start=START, duration_minutes=30)
    return slot, last_event(slot)


def held() -> tuple[Slot, Any]:
    slot, _ = opened()
    slot.hold(BOOKING, START - timedelta(hours=1), START - timedelta(hours=2))
    return slot, last_event(slot)


def started() -> tuple[BookingSaga, Any]:
    saga = BookingSaga(consultation_id=UUID(int=9), patient_id=PATIENT, doctor_id=DOCTOR, slot_id=UUID(int=8),
                       deadline=DEADLINE)
    return saga, last_event(saga)


def validating() -> BookingSaga:
    saga, _ = started()
    saga.record_slot_held()
    saga.collect_events()
    return saga


def completed() -> BookingSaga:
    saga = validating()
    saga.record_registrants_valid()
    saga.record_slot_booked()
    saga.collect_events()
    return saga
