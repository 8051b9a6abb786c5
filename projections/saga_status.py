"""``saga:<id>`` (state of a booking saga) and ``saga:<id>:steps`` (its steps, as ``BookingSaga.steps``).

Saga events are recognised by topic: projections and process managers are independent layers.
Each step is JSON ``{"name", "status", "at"}`` with ``at`` the event's timestamp (ISO, UTC).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from projections.ops import AppendToList, Op, SetFields, SetFieldsIf
from projections.values import iso, topic_of

SAGA = "process_managers.booking_saga:BookingSaga."
REGISTRY_REASONS = ("doctor_inactive", "doctor_not_found", "patient_not_eligible", "validation_unavailable")

# The steps each event appends and the state it moves to (None: unchanged), as the saga's mutators do.
SIMPLE = {
    SAGA + "SlotHeld": ("VALIDATING", [("hold_slot", "succeeded"), ("validate_registrants", "requested")]),
    SAGA + "ValidationUnavailable": (None, [("validate_registrants", "unavailable")]),
    SAGA + "RegistrantsValidated": ("BOOKING_SLOT", [("validate_registrants", "succeeded"),
                                                      ("book_slot", "requested")]),
    SAGA + "Completed": ("COMPLETED", [("book_slot", "succeeded"), ("confirm_consultation", "requested")]),
}


def saga_key(saga_id: object) -> str:
    """The hash of one saga: saga_id, consultation_id, state, rejection_reason ("" when none), deadline."""
    return f"saga:{saga_id}"


def saga_steps_key(saga_id: object) -> str:
    """The list of one saga's steps, oldest first."""
    return f"saga:{saga_id}:steps"


class SagaStatus:
    """What operators follow of a booking: its state, why it was rejected, each step and when."""

    name = "saga_status"
    version = 1
    leaders = ("Booking",)

    def changes(self, event: Any) -> list[Op]:
        """The state and steps the saga's mutator for ``event`` sets and appends."""
        topic = topic_of(event)
        if not topic.startswith(SAGA):
            return []
        saga_id = str(event.originator_id)
        if topic in SIMPLE:
            state, steps = SIMPLE[topic]
            ops: list[Op] = [SetFields(saga_key(saga_id), {"state": state})] if state else []
            return ops + _steps(event, saga_id, steps)
        if topic == SAGA + "Started":
            return [SetFields(saga_key(saga_id), _started_fields(event)),
                    *_steps(event, saga_id, [("hold_slot", "requested")])]
        if topic == SAGA + "Rejected":
            return _rejected(event, saga_id)
        if topic == SAGA + "SlotReleaseRequested":
            cancelled = SetFieldsIf(saga_key(saga_id), "state", "COMPLETED", {"state": "CANCELLED"})
            return [cancelled, *_steps(event, saga_id, [("release_slot", "requested")])]
        return []


def _started_fields(event: Any) -> dict[str, str]:
    return {
        "saga_id": str(event.originator_id),
        "consultation_id": str(event.consultation_id),
        "state": "HOLDING_SLOT",
        "rejection_reason": "",
        "deadline": iso(event.deadline),
    }


def _rejected(event: Any, saga_id: str) -> list[Op]:
    steps = [(event.failed_step or _legacy_failed_step(event), "failed")]
    if event.release_slot:
        steps.append(("release_slot", "requested"))
    steps.append(("reject_consultation", "requested"))
    fields = {"state": "REJECTED", "rejection_reason": event.reason}
    return [SetFields(saga_key(saga_id), fields), *_steps(event, saga_id, steps)]


def _legacy_failed_step(event: Any) -> str:
    """The failed step of a rejection recorded before events named it, from what the event says.

    No slot to release means it was still holding; a registry verdict means validating; else booking
    (a deadline passed while validating with no "unavailable" answer is the one case told wrong).
    """
    if not event.release_slot:
        return "hold_slot"
    return "validate_registrants" if event.reason in REGISTRY_REASONS else "book_slot"


def _steps(event: Any, saga_id: str, steps: list[tuple[str, str]]) -> list[Op]:
    at = iso(event.timestamp)
    key = saga_steps_key(saga_id)
    return [AppendToList(key, _step_head(name, status) + at + '"}') for name, status in steps]


@lru_cache(maxsize=256)
def _step_head(name: str, status: str) -> str:
    """``{"name":…,"status":…,"at":"`` as ``json.dumps`` writes it (the ISO time needs no escaping)."""
    return json.dumps({"name": name, "status": status, "at": ""}, separators=(",", ":"))[:-2]
