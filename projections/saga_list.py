"""``sagas`` (every booking and reschedule saga, scored by when it started) and ``saga-listing:<id>`` (what
a list of sagas shows that ``saga_status`` does not: which saga it is, for whom, and when it started), so
operators page through sagas newest first; each saga's state is read from ``saga_status``.

The starting events are found from the sagas' tables (``domain.booking_saga_table``), by the class name
of the saga aggregate that records them, as ``saga_status`` finds its events."""

from __future__ import annotations

from typing import Any

from domain.booking_saga_table import BOOKING_SAGA
from domain.reschedule_saga_table import RESCHEDULE_SAGA
from projections.ops import AddToIndex, Op, SetFields
from projections.values import epoch, iso

KINDS = {BOOKING_SAGA.aggregate: "booking", RESCHEDULE_SAGA.aggregate: "reschedule"}
"""Each saga aggregate's kind, as operators and the audit (``/v1/audit/{kind}``) name it."""
_STARTS = {f"{table.aggregate}.{event}": table.aggregate
           for table in (BOOKING_SAGA, RESCHEDULE_SAGA) for event in table.events if table.starts(event)}

SAGAS = "sagas"
"""The sorted set of every saga id, by start."""


def trace_id_of(traceparent: str | None) -> str:
    """The trace id of a W3C ``traceparent`` (``00-<trace id>-<span id>-<flags>``); "" without one."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 else ""


def saga_listing_key(saga_id: object) -> str:
    return f"saga-listing:{saga_id}"


class SagaList:
    """saga_id, kind (booking, reschedule), aggregate (its class), consultation_id, patient_id, doctor_id,
    started_at, correlation_id and trace_id (of the request that started it; "" when none) of every saga."""

    name = "saga_list"
    version = 1
    leaders = ("Booking",)

    def changes(self, event: Any) -> list[Op]:
        aggregate = _STARTS.get(type(event).__qualname__)
        if aggregate is None:
            return []
        saga_id = str(event.originator_id)
        return [SetFields(saga_listing_key(saga_id), {
                    "saga_id": saga_id, "kind": KINDS[aggregate], "aggregate": aggregate, "consultation_id": str(event.consultation_id),
                    "patient_id": str(event.patient_id), "doctor_id": str(event.doctor_id),
                    "started_at": iso(event.timestamp), "correlation_id": event.correlation_id or "",
                    "trace_id": trace_id_of(event.traceparent)}),
                AddToIndex(SAGAS, saga_id, epoch(event.timestamp))]
