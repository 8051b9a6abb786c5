"""A booking made through the clinic's use cases, for tests that need a saga to look at."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

START = datetime(2027, 1, 5, 9, tzinfo=UTC)


def a_saga(clinic: Any, start: datetime = START) -> str:
    """A consenting patient books a new doctor's open slot at ``start``; the saga's id, once the clinic has
    done what it can with it (confirmed, or waiting on whatever the test made unavailable)."""
    patient = clinic.registry.register_patient("Ana", "ana@example.org", date(1990, 1, 1), True)
    doctor = clinic.registry.register_doctor("Dr Rui", "gp")
    clinic.open_slots(doctor, [(start, 30)])
    saga_id = str(clinic.book(patient, doctor, start, "check-up").saga_id)
    clinic.wait_until_settled()
    return saga_id
