"""``slot:<slot_id>`` (one hash per slot) and ``doctor:<doctor_id>:slots:<YYYY-MM-DD>`` (by start)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.slot import STATUS_AFTER as SLOT_STATUS_AFTER
from domain.slot import Slot
from projections.ops import AddToIndex, Op, SetFields
from projections.values import epoch, iso, utc_day

STATUS_AFTER: dict[type, str] = {getattr(Slot, name): status.value for name, status in SLOT_STATUS_AFTER.items()
                                  if name != "Opened"}
"""The status each later event leaves a slot in, from the aggregate's own table."""


def slot_key(slot_id: object) -> str:
    """The hash of one slot."""
    return f"slot:{slot_id}"


def doctor_slots_key(doctor_id: object, day: str | datetime) -> str:
    """The sorted set of a doctor's slots starting on ``day`` (``YYYY-MM-DD`` or a datetime in it)."""
    return f"doctor:{doctor_id}:slots:{day if isinstance(day, str) else utc_day(day)}"


class DoctorSlots:
    """slot_id, doctor_id, start, duration_minutes, status and booking_id ("" when none) of each slot."""

    name = "doctor_slots"
    version = 1
    leaders = ("Scheduling",)

    def changes(self, event: Any) -> list[Op]:
        """Opening writes the slot and indexes it; later events change its status and booking."""
        kind = type(event)
        key = slot_key(event.originator_id)
        if kind is Slot.Opened:
            return [SetFields(key, _opened_fields(event)),
                    AddToIndex(doctor_slots_key(event.doctor_id, event.start), str(event.originator_id),
                               epoch(event.start))]
        if kind not in STATUS_AFTER:
            return []  # SlotRequestRefused.Recorded: a refusal, no slot changed
        fields = {"status": STATUS_AFTER[kind]}
        if kind is Slot.Held:
            fields["booking_id"] = str(event.booking_id)
        elif kind is Slot.Released:
            fields["booking_id"] = ""
        return [SetFields(key, fields)]


def _opened_fields(event: Any) -> dict[str, str]:
    return {
        "slot_id": str(event.originator_id),
        "doctor_id": str(event.doctor_id),
        "start": iso(event.start),
        "duration_minutes": str(event.duration_minutes),
        "status": SLOT_STATUS_AFTER["Opened"].value,
        "booking_id": "",
    }
