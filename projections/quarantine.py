"""Poison events of the read models: each entry records what one projection could not apply, and why.

An entry is an op like any other (``AppendToList`` under ``QUARANTINE_KEY``), written by the runner in
the batch that moves the projection's position past the event, so an event is either applied or
quarantined, exactly once. ``listed`` reads them back; ``retry`` applies an entry's event again (the
entry goes if it now applies, else it stays with the new error) and ``skip`` drops entries an operator
has decided to give up. Both write through ``ViewStore.apply`` with the position of a pseudo-leader,
``OPERATOR``, that counts the repairs, so a repair is atomic and two never interleave. A retried event
is applied now, after the events that followed it: where a view must equal a rebuild, rebuild it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError

from projections.base import Projection
from projections.ops import AppendToList, Op, RemoveFromList
from projections.store import ViewStore

QUARANTINE_KEY = "quarantine"
"""The list, in each projection version's keys, of the events it quarantined."""
_MAX_ERROR = 500


@dataclass(frozen=True)
class QuarantinedEvent:
    """One event one projection could not apply."""

    projection: str
    leader: str
    notification_id: int
    topic: str
    originator_id: str
    originator_version: int
    error: str
    at: str

    @property
    def id(self) -> str:
        """How operators name it: ``<leader>:<notification id>``."""
        return f"{self.leader}:{self.notification_id}"


def quarantined(projection: str, leader: str, notification: Any, error: BaseException) -> Op:
    """The entry of ``notification`` that ``projection`` could not apply, as the op that records it."""
    entry = QuarantinedEvent(projection, leader, notification.id, notification.topic, str(notification.originator_id),
                             notification.originator_version, f"{type(error).__name__}: {error}"[:_MAX_ERROR],
                             datetime.now(UTC).isoformat())
    return AppendToList(QUARANTINE_KEY, json.dumps(asdict(entry)))


def entries(items: Sequence[str]) -> list[QuarantinedEvent]:
    """The entries of a projection version's quarantine list, oldest first."""
    return [QuarantinedEvent(**json.loads(item)) for item in items]


def keep(items: Sequence[str], drop: set[str]) -> list[str]:
    """The list's items but those whose entry id is in ``drop``."""
    return [item for item, entry in zip(items, entries(items), strict=True) if entry.id not in drop]


OPERATOR = "operator"
"""The pseudo-leader whose position counts the operators' repairs of a projection version."""
_REPAIR_ATTEMPTS = 5


def listed(store: ViewStore, projections: Iterable[Projection]) -> dict[str, list[QuarantinedEvent]]:
    """Each projection's quarantined events, in the version readers use."""
    return {p.name: entries(store.list_items(p.name, serving(store, p), QUARANTINE_KEY)) for p in projections}


def skip(store: ViewStore, projection: Projection, ids: set[str] | None = None) -> list[QuarantinedEvent]:
    """Drop the entries named by ``ids`` (``None``: every one); the entries dropped."""
    version = serving(store, projection)
    chosen = _chosen(store, projection.name, version, ids)
    if chosen:
        _repair(store, projection.name, version, [RemoveFromList(QUARANTINE_KEY, item) for item, _ in chosen])
    return [entry for _, entry in chosen]


def retry(apps: Mapping[str, Any], store: ViewStore, projection: Projection,
          ids: set[str] | None = None) -> tuple[list[QuarantinedEvent], list[QuarantinedEvent]]:
    """Apply the events of the entries named by ``ids`` (``None``: every one) again: those that apply now
    leave the quarantine, the others stay with their new error. Returns (applied, still failing)."""
    version = serving(store, projection)
    applied, failing = [], []
    for item, entry in _chosen(store, projection.name, version, ids):
        app = apps[entry.leader]
        [notification] = app.recorder.select_notifications(start=entry.notification_id, limit=1)
        try:
            ops = projection.changes(app.mapper.to_domain_event(notification))
        except (OperationalError, InterfaceError):
            raise
        except Exception as error:  # noqa: BLE001 - it fails again: the entry stays, with this error
            ops = [quarantined(projection.name, entry.leader, notification, error)]
            failing.append(entry)
        else:
            applied.append(entry)
        _repair(store, projection.name, version, [RemoveFromList(QUARANTINE_KEY, item), *ops])
    return applied, failing


def serving(store: ViewStore, projection: Projection) -> int:
    return store.serving_version(projection.name) or projection.version


def _chosen(store: ViewStore, name: str, version: int, ids: set[str] | None) -> list[tuple[str, QuarantinedEvent]]:
    items = store.list_items(name, version, QUARANTINE_KEY)
    return [(item, entry) for item, entry in zip(items, entries(items), strict=True) if ids is None or entry.id in ids]


def _repair(store: ViewStore, name: str, version: int, ops: Sequence[Op]) -> None:
    for _ in range(_REPAIR_ATTEMPTS):
        done = store.position(name, version, OPERATOR)
        if store.apply(name, version, OPERATOR, done + 1, ops, expected_position=done):
            return
    raise RuntimeError(f"{name} v{version}: another repair kept moving first; run the command again")
