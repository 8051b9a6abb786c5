"""``saga:<id>`` (state of a booking saga) and ``saga:<id>:steps`` (its steps, as ``BookingSaga.steps``).

What each event writes comes from the saga's table (``domain.booking_saga_table.BOOKING_SAGA``), the
one the aggregate's mutators apply. Saga events are recognised by their class name on the saga
aggregate: projections and process managers are independent layers.
Each step is JSON ``{"name", "status", "at"}`` with ``at`` the event's timestamp (ISO, UTC).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from domain.booking_saga_table import BOOKING_SAGA, Move, SagaState
from domain.values import RejectionReason
from projections.ops import AppendToList, Op, SetFields, SetFieldsIf
from projections.values import iso

REGISTRY_REASONS = frozenset({RejectionReason.DOCTOR_INACTIVE, RejectionReason.DOCTOR_NOT_FOUND,
                              RejectionReason.PATIENT_NOT_ELIGIBLE, RejectionReason.VALIDATION_UNAVAILABLE})
"""The rejections only a validating saga records (to infer the failed step of older events)."""


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
        owner, _, kind = type(event).__qualname__.partition(".")
        if owner != BOOKING_SAGA.aggregate or kind not in BOOKING_SAGA.events:
            return []
        saga_id = str(event.originator_id)
        moves = _moves_for(event, kind)
        steps = _steps(event, saga_id, moves[0])
        if BOOKING_SAGA.starts(kind):
            return [SetFields(saga_key(saga_id), _started_fields(event, moves[0].target)), *steps]
        return [*_state_ops(event, saga_id, moves), *steps]


def _moves_for(event: Any, kind: str) -> list[Move]:
    """The table's rows ``event`` may be; a rejection names its row by the step that failed."""
    moves = BOOKING_SAGA.moves_of(kind)
    if len(moves) > 1 and hasattr(event, "failed_step"):
        failed = event.failed_step or _legacy_failed_step(event)
        return [move for move in moves if move.failed_step == failed]
    return list(moves)


def _state_ops(event: Any, saga_id: str, moves: list[Move]) -> list[Op]:
    """One row: set its state; several (the saga's state decides): a conditional write per row that moves."""
    key = saga_key(saga_id)
    if len(moves) == 1:
        fields = {"state": moves[0].target.value} if moves[0].source != moves[0].target else {}
        if moves[0].target is SagaState.REJECTED:
            fields["rejection_reason"] = event.reason
        return [SetFields(key, fields)] if fields else []
    return [SetFieldsIf(key, "state", move.source.value, {"state": move.target.value})
            for move in moves if move.source is not None and move.source != move.target]


def _started_fields(event: Any, state: SagaState) -> dict[str, str]:
    return {
        "saga_id": str(event.originator_id),
        "consultation_id": str(event.consultation_id),
        "state": state.value,
        "rejection_reason": "",
        "deadline": iso(event.deadline),
    }


def _legacy_failed_step(event: Any) -> str:
    """The failed step of a rejection recorded before events named it, from what the event says.

    No slot to release means it was still holding; a registry verdict means validating; else booking
    (a deadline passed while validating with no "unavailable" answer is the one case told wrong).
    """
    if not event.release_slot:
        return "hold_slot"
    return "validate_registrants" if event.reason in REGISTRY_REASONS else "book_slot"


def _steps(event: Any, saga_id: str, move: Move) -> list[Op]:
    at = iso(event.timestamp)
    key = saga_steps_key(saga_id)
    return [AppendToList(key, _step_head(step.name, step.status.value) + at + '"}') for step in move.steps]


@lru_cache(maxsize=256)
def _step_head(name: str, status: str) -> str:
    """``{"name":…,"status":…,"at":"`` as ``json.dumps`` writes it (the ISO time needs no escaping)."""
    return json.dumps({"name": name, "status": status, "at": ""}, separators=(",", ":"))[:-2]
