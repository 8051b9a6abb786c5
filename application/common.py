"""What every context's application shares."""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import Mapper, Recording, Transcoder

from domain.base import NotFoundError
from process_managers.base import (
    MapperFactory,
    StoreObserver,
    close_mapper,
    construct_mapper_with,
    register_clinic_transcodings,
    timed_record,
)
from process_managers.tracing import recording_span

T = TypeVar("T")


class ClinicApplication(Application):
    """A context's application that only records (it follows no one)."""

    store_observer: StoreObserver | None = None

    def __init__(self, env: Any = None, *, mapper_factory: MapperFactory | None = None) -> None:
        self._mapper_factory = mapper_factory
        super().__init__(env)

    def construct_mapper(self) -> Mapper[Any]:
        """The mapper from ``mapper_factory`` if one was given (see ``application/personal_data.py``)."""
        return construct_mapper_with(self, self._mapper_factory, super().construct_mapper)

    def close(self) -> None:
        super().close()
        close_mapper(self.mapper)

    def _record(self, processing_event: ProcessingEvent) -> list[Recording]:
        """What ``save`` records, timed for ``store_observer``, traced (``eventstore.append``)."""
        with recording_span(self, processing_event):
            return timed_record(self, super()._record, processing_event)

    def register_transcodings(self, transcoder: Transcoder) -> None:
        super().register_transcodings(transcoder)
        register_clinic_transcodings(transcoder)


def load(app: Application[Any], aggregate_id: UUID, cls: type[T], kind: str) -> T:
    """The aggregate ``aggregate_id`` of type ``cls``, or ``NotFoundError`` naming ``kind``."""
    try:
        aggregate = app.repository.get(aggregate_id)
    except AggregateNotFoundError:
        raise NotFoundError(f"{kind} {aggregate_id} not found") from None
    if not isinstance(aggregate, cls):
        raise NotFoundError(f"{kind} {aggregate_id} not found")
    return aggregate
