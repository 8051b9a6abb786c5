"""The same booking behaviour on every event store: memory, SQLite, PostgreSQL (both modules)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tests.conftest import BACKENDS

START = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("backend", BACKENDS)
def test_booking_is_confirmed_and_a_second_booking_of_the_slot_rejected(make_clinic, backend):
    clinic = make_clinic(backend)
    patient = clinic.registry.register_patient("Ana", "ana@example.org", date(1990, 1, 1), True)
    doctor = clinic.registry.register_doctor("Dr. Rui", "cardiology")
    clinic.open_slots(doctor, [(START, 30)])

    first = clinic.book(patient, doctor, START, "check-up")
    second = clinic.book(patient, doctor, START, "check-up again")
    clinic.wait_until_settled()

    assert clinic.consultations.consultation(first.consultation_id).status == "CONFIRMED"
    rejected = clinic.consultations.consultation(second.consultation_id)
    assert (rejected.status, rejected.rejection_reason) == ("REJECTED", "slot_unavailable")
