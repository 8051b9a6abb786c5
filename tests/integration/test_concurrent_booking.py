"""Fifty patients book the same slot at the same moment: exactly one gets it."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from functools import partial
from uuid import UUID

import pytest

from application.clinic import Clinic
from domain.slot import slot_id_for
from tests.kit.concurrency import all_at_once

START = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)
PATIENTS = 50


def register_consenting_patients(clinic: Clinic, count: int) -> list[UUID]:
    return [clinic.registry.register_patient(f"Patient {n}", f"p{n}@example.org", date(1980, 1, 1), True)
            for n in range(count)]


def book_all_at_once(clinic: Clinic, patients: list[UUID], doctor: UUID) -> list[UUID]:
    """Each patient books START from their own thread, all released by one barrier."""
    return all_at_once([partial(lambda p: clinic.book(p, doctor, START, "same slot").consultation_id, patient)
                        for patient in patients])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_fifty_simultaneous_bookings_of_one_slot_confirm_exactly_one(make_clinic, backend):
    # Given fifty consenting patients and one open slot
    clinic = make_clinic(backend)
    patients = register_consenting_patients(clinic, PATIENTS)
    doctor = clinic.registry.register_doctor("Dr. Rui", "cardiology")
    clinic.open_slots(doctor, [(START, 30)])
    # When they all book it at the same moment
    consultations = book_all_at_once(clinic, patients, doctor)
    clinic.wait_until_settled(timeout=60)
    # Then exactly one is confirmed and the other 49 rejected as slot unavailable
    outcomes = Counter(
        (view.status, view.rejection_reason)
        for view in map(clinic.consultations.consultation, consultations)
    )
    assert outcomes == {("CONFIRMED", None): 1, ("REJECTED", "slot_unavailable"): PATIENTS - 1}
    # And the slot's stream records exactly one booking
    slot_events = clinic.auditor.trail("slot", slot_id_for(doctor, START)).events
    assert [e.type for e in slot_events if e.type.endswith("Booked")] == ["Slot.Booked"]
