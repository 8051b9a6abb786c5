"""``saga:<id>`` (state of a booking or reschedule saga) and ``saga:<id>:steps`` (its steps, as the
aggregate's ``steps``).

What each event writes comes from the saga's table (``domain.booking_saga_table.BOOKING_SAGA``,
``domain.reschedule_saga_table.RESCHEDULE_SAGA``), the
one the aggregate's mutators apply, turned once into a ``Plan`` per event (and, for a rejection, per
failed step). Saga events are recognised by their class name on the saga aggregate: projections and
process managers are independent layers.
Each step is JSON ``{"name", "status", "at"}`` with ``at`` the event's timestamp (ISO, UTC).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from domain.booking_saga_table import BOOKING_SAGA, Move, SagaState, SagaTable
from domain.reschedule_saga_table import RESCHEDULE_SAGA
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


@dataclass(frozen=True)
class Plan:
    """What one saga event writes, from the table's rows it may be."""

    starts: str | None
    """The state a starting event creates the saga in (``None``: it does not start one)."""
    state: str | None
    """The state it sets whatever the saga's state (one row that moves; ``None``: none)."""
    conditional: tuple[tuple[str, str], ...]
    """``(source, target)`` per row that moves, when the saga's state picks the row."""
    rejects: bool
    """It records ``rejection_reason``."""
    step_heads: tuple[str, ...]
    """Each step it appends, as JSON up to its time: ``{"name":…,"status":…,"at":"``."""


class SagaStatus:
    """What operators follow of a booking: its state, why it was rejected, each step and when."""

    name = "saga_status"
    version = 1
    leaders = ("Booking",)

    def changes(self, event: Any) -> list[Op]:
        """The state and steps the saga's mutator for ``event`` sets and appends."""
        plans = _PLANS.get(type(event).__qualname__)
        if plans is None:
            return []
        plan = plans[_ended_step(event)] if len(plans) > 1 else plans[""]
        saga_id = str(event.originator_id)
        key = saga_key(saga_id)
        at = iso(event.timestamp)
        steps_key = saga_steps_key(saga_id)
        steps: list[Op] = [AppendToList(steps_key, head + at + '"}') for head in plan.step_heads]
        if plan.starts is not None:
            return [SetFields(key, _started_fields(event, plan.starts)), *steps]
        if plan.state is not None:
            fields = {"state": plan.state}
            if plan.rejects:
                fields["rejection_reason"] = event.reason
            return [SetFields(key, fields), *steps]
        return [*(SetFieldsIf(key, "state", source, {"state": target}) for source, target in plan.conditional), *steps]


def _plan(moves: tuple[Move, ...]) -> Plan:
    moving = [move for move in moves if move.source != move.target]
    one = moving[0] if len(moves) == 1 and moving else None
    return Plan(
        starts=moves[0].target.value if moves[0].source is None else None,
        state=one.target.value if one is not None and one.source is not None else None,
        conditional=tuple((m.source.value, m.target.value) for m in moving if m.source is not None) if len(moves) > 1
        else (),
        rejects=moves[0].target is SagaState.REJECTED and len(moves) == 1,
        step_heads=tuple(_step_head(step.name, step.status.value) for step in moves[0].steps),
    )


def _plans(table: SagaTable, kind: str) -> dict[str, Plan]:
    """One plan per step the event ends when it names its row by it (a rejection's failed step, a
    cancellation's cancelled step), else one ("")."""
    moves = table.moves_of(kind)
    if len(moves) > 1 and len({move.ended_step for move in moves}) == len(moves):
        return {move.ended_step: _plan((move,)) for move in moves}
    return {"": _plan(moves)}


def _ended_step(event: Any) -> str:
    """The step a rejection failed or a cancellation abandoned, as the event names it."""
    if hasattr(event, "cancelled_step"):
        return str(event.cancelled_step)
    return event.failed_step or _legacy_failed_step(event)


def _started_fields(event: Any, state: str) -> dict[str, str]:
    return {
        "saga_id": str(event.originator_id),
        "consultation_id": str(event.consultation_id),
        "state": state,
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


def _step_head(name: str, status: str) -> str:
    """``{"name":…,"status":…,"at":"`` as ``json.dumps`` writes it (the ISO time needs no escaping)."""
    return json.dumps({"name": name, "status": status, "at": ""}, separators=(",", ":"))[:-2]


_PLANS: dict[str, dict[str, Plan]] = {f"{table.aggregate}.{kind}": _plans(table, kind)
                                      for table in (BOOKING_SAGA, RESCHEDULE_SAGA) for kind in table.events}
"""Each saga event's plans, by its class ``__qualname__`` (``BookingSaga.SlotHeld``, ``RescheduleSaga.…``)."""
