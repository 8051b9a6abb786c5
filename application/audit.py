"""Audit by replay: any aggregate at a version or a moment, from its stream alone."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any
from uuid import UUID

from eventsourcing.application import Application

from application.views import AuditedEvent, AuditTrail
from domain.base import DomainError, NotFoundError
from domain.values import require_aware

_ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic",
             "correlation_id", "causation_id", "saga_id", "actor", "traceparent"}


class AuditQueryError(DomainError):
    """The audit query is malformed (unknown kind, both version and as-of, bad version)."""


class Auditor:
    """Rebuilds aggregates of each kind from the store of the context that owns them."""

    def __init__(self, sources: Mapping[str, tuple[Application[Any], type]],
                 integrity: Callable[[Application[Any], UUID], str | None] | None = None) -> None:
        self.sources = sources
        self.integrity = integrity
        """Whether a stream's hash chain verifies (``verified``, or what breaks it), where its store keeps
        one (``None``: it keeps none); given by the composition root."""

    @property
    def kinds(self) -> list[str]:
        return sorted(self.sources)

    def trail(self, kind: str, aggregate_id: UUID, version: int | None = None,
              as_of: datetime | None = None) -> AuditTrail:
        """The aggregate at ``version`` (or as of ``as_of``, or now) and its history."""
        app, cls = self._source(kind)
        if version is not None and as_of is not None:
            raise AuditQueryError("give a version or a moment, not both")
        if version is not None and version < 1:
            raise AuditQueryError("version must be 1 or more")
        events = list(app.events.get(aggregate_id))
        if not events:
            raise NotFoundError(f"{kind} {aggregate_id} not found")
        upto = self._upto(kind, aggregate_id, events, version, as_of)
        aggregate = app.repository.get(aggregate_id, version=upto)
        if not isinstance(aggregate, cls):
            raise NotFoundError(f"{kind} {aggregate_id} not found")
        return AuditTrail(
            kind=kind, aggregate_id=aggregate_id, version=aggregate.version,
            state=aggregate_state(aggregate),
            events=[audited(e) for e in events if e.originator_version <= upto],
            integrity=self.integrity(app, aggregate_id) if self.integrity is not None else None,
        )

    def kinds_of(self, aggregate_id: UUID) -> list[str]:
        """The kinds of the streams with this id (one, or none: no such stream), by the first event of each store
        that has one."""
        return [kind for kind, (app, cls) in self.sources.items() if _first_is_of(app, cls, aggregate_id)]

    def store_of(self, kind: str) -> Application[Any]:
        """The application whose store holds aggregates of ``kind``."""
        return self._source(kind)[0]

    def _source(self, kind: str) -> tuple[Application[Any], type]:
        try:
            return self.sources[kind]
        except KeyError:
            raise AuditQueryError(f"kind must be one of: {', '.join(self.kinds)}") from None

    @staticmethod
    def _upto(kind: str, aggregate_id: UUID, events: list[Any], version: int | None,
              as_of: datetime | None) -> int:
        last = events[-1].originator_version
        if version is not None:
            if version > last:
                raise NotFoundError(f"{kind} {aggregate_id} has no version {version} (latest is {last})")
            return version
        if as_of is None:
            return last
        as_of = require_aware(as_of, "as_of")
        versions = [e.originator_version for e in events if e.timestamp <= as_of]
        if not versions:
            raise NotFoundError(f"{kind} {aggregate_id} did not exist at {as_of.isoformat()}")
        return versions[-1]


def _first_is_of(app: Application[Any], cls: type, aggregate_id: UUID) -> bool:
    first = next(iter(app.events.get(aggregate_id, limit=1)), None)
    return first is not None and type(first).__qualname__.startswith(f"{cls.__qualname__}.")


def audited(event: Any) -> AuditedEvent:
    """An event as an auditor reads it: type, position, time, metadata, data."""
    return AuditedEvent(
        type=type(event).__qualname__,
        version=event.originator_version,
        timestamp=event.timestamp,
        correlation_id=getattr(event, "correlation_id", None),
        causation_id=getattr(event, "causation_id", None),
        saga_id=getattr(event, "saga_id", None),
        actor=getattr(event, "actor", None),
        data={k: plain(v) for k, v in vars(event).items() if k not in _ENVELOPE},
    )


def aggregate_state(aggregate: Any) -> dict[str, Any]:
    """The aggregate's attributes as plain JSON-ready values."""
    state: dict[str, Any] = {"id": str(aggregate.id), "version": aggregate.version,
                             "created_on": plain(aggregate.created_on),
                             "modified_on": plain(aggregate.modified_on)}
    state |= {k: plain(v) for k, v in vars(aggregate).items() if not k.startswith("_")}
    return state


def plain(value: Any) -> Any:
    """JSON-ready form of a value found in events and aggregates."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (UUID,)):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value
