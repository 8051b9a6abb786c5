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


def load(app: Application[Any], aggregate_id: UUID, cls: type[T], kind: str) -> T:
    """The aggregate ``aggregate_id`` of type ``cls``, or ``NotFoundError`` naming ``kind``."""
    try:
        aggregate = app.repository.get(aggregate_id)
    except AggregateNotFoundError:
        raise NotFoundError(f"{kind} {aggregate_id} not found") from None
    if not isinstance(aggregate, cls):
        raise NotFoundError(f"{kind} {aggregate_id} not found")
    return aggregate
