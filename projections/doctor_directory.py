"""``doctor:<id>`` (a doctor's name, specialty and whether they take bookings) and the directory's indexes:
``doctors`` (every doctor) and ``doctors:specialty:<specialty>`` (by specialty, lower-cased), each scored
by when the doctor was registered, so a page of the directory is stable while doctors are added."""

from __future__ import annotations

from typing import Any

from domain.doctor import Doctor
from projections.ops import AddToIndex, Op, SetFields
from projections.values import epoch

ACTIVE_AFTER: dict[type, str] = {Doctor.Deactivated: "false", Doctor.Reactivated: "true"}
"""What each later event of a doctor says of whether they take bookings."""


def doctor_key(doctor_id: object) -> str:
    """The hash of one doctor."""
    return f"doctor:{doctor_id}"


def doctors_key(specialty: str | None = None) -> str:
    """The sorted set of every doctor, or of one specialty's (compared lower-cased), by registration."""
    return "doctors" if specialty is None else f"doctors:specialty:{specialty.strip().lower()}"


class DoctorDirectory:
    """doctor_id, name, specialty, active ("true"/"false") of each doctor, for patients to find one."""

    name = "doctor_directory"
    version = 1
    leaders = ("Registry",)

    def changes(self, event: Any) -> list[Op]:
        """Registering writes the doctor and indexes them; deactivating or reactivating sets ``active``."""
        kind = type(event)
        if kind is Doctor.Registered:
            member, score = str(event.originator_id), epoch(event.timestamp)
            return [SetFields(doctor_key(member), {"doctor_id": member, "name": event.name,
                                                   "specialty": event.specialty, "active": "true"}),
                    AddToIndex(doctors_key(), member, score), AddToIndex(doctors_key(event.specialty), member, score)]
        if kind in ACTIVE_AFTER:
            return [SetFields(doctor_key(event.originator_id), {"active": ACTIVE_AFTER[kind]})]
        return []
