"""``doctor:<doctor_id>:agenda:<YYYY-MM-DD>``: a doctor's consultations of one UTC day, by start.

Rejected and cancelled consultations stay members; the query hides them using ``consultation:<id>``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.consultation import Consultation
from projections.ops import AddToIndex, Op, RemoveFromIndex
from projections.values import epoch, utc_day


def doctor_agenda_key(doctor_id: object, day: str | datetime) -> str:
    """The sorted set of a doctor's consultations on ``day`` (``YYYY-MM-DD`` or a datetime in it)."""
    return f"doctor:{doctor_id}:agenda:{day if isinstance(day, str) else utc_day(day)}"


class DoctorAgenda:
    """Indexes every requested consultation under its doctor and the UTC day of its start."""

    name = "doctor_agenda"
    version = 1
    leaders = ("Consultations",)

    def changes(self, event: Any) -> list[Op]:
        """A request adds the consultation to its day; a reschedule moves it to the new start's day."""
        if type(event) is Consultation.Rescheduled:
            member = str(event.originator_id)
            return [RemoveFromIndex(doctor_agenda_key(event.doctor_id, event.from_start), member),
                    AddToIndex(doctor_agenda_key(event.doctor_id, event.start), member, epoch(event.start))]
        if type(event) is not Consultation.Requested:
            return []
        key = doctor_agenda_key(event.doctor_id, event.start)
        return [AddToIndex(key, str(event.originator_id), epoch(event.start))]
