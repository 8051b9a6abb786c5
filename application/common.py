"""What every context's application shares."""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.system import Leader

from domain.base import NotFoundError
from process_managers.base import ClinicStore

T = TypeVar("T")


class ClinicApplication(ClinicStore, Leader):
    """A context's application that only records (it follows no one); it tells whoever leads it (the
    embedded runner, the outbox relay) what it records."""


class VersionConflictError(Exception):
    """The resource changed since the version the client based its request on."""


def expect_version(aggregate: Any, expected: int | None, kind: str) -> None:
    """Refuse to act on ``aggregate`` unless it is at ``expected`` (``None``: at any version)."""
    if expected is not None and aggregate.version != expected:
        raise VersionConflictError(f"the {kind} is at version {aggregate.version}, not {expected}")


def load(app: Application[Any], aggregate_id: UUID, cls: type[T], kind: str) -> T:
    """The aggregate ``aggregate_id`` of type ``cls``, or ``NotFoundError`` naming ``kind``."""
    try:
        aggregate = app.repository.get(aggregate_id)
    except AggregateNotFoundError:
        raise NotFoundError(f"{kind} {aggregate_id} not found") from None
    if not isinstance(aggregate, cls):
        raise NotFoundError(f"{kind} {aggregate_id} not found")
    return aggregate
