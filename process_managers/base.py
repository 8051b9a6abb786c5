"""The base of every event-processing application: clock, metadata, codecs."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, Protocol

from eventsourcing.application import NotificationLog, ProcessingEvent
from eventsourcing.persistence import Mapper, Recording, Tracking, Transcoder, Transcoding
from eventsourcing.system import NotificationLogReader, ProcessApplication

from domain.metadata import caused_by
from process_managers.tracing import processing_span, recording_span


def utc_now() -> datetime:
    return datetime.now(UTC)


class DateAsISO(Transcoding):
    """Stores a calendar date (e.g. a birth date) as ``YYYY-MM-DD``."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


def register_clinic_transcodings(transcoder: Transcoder) -> None:
    transcoder.register(DateAsISO())


MapperFactory = Callable[[Transcoder], Mapper[Any]]
"""Builds an application's mapper from its transcoder (the composition root's crypto-shredding mapper)."""


def construct_mapper_with(app: Any, factory: MapperFactory | None, default: Callable[[], Mapper[Any]]) -> Mapper[Any]:
    """``factory(app's transcoder)``, or the library's mapper when no factory was given."""
    return default() if factory is None else factory(app.construct_transcoder())


class StoreObserver(Protocol):
    """Told of every transaction an application records (the composition root's metrics)."""

    def appended(self, application: str, events: int, seconds: float) -> None: ...


def timed_record(app: Any, record: Callable[[ProcessingEvent], list[Recording]],
                 processing_event: ProcessingEvent) -> list[Recording]:
    """``record(processing_event)``, told to ``app.store_observer`` (if any) with its duration."""
    started = time.perf_counter()
    recordings = record(processing_event)
    if app.store_observer is not None and recordings:
        app.store_observer.appended(app.name, len(recordings), time.perf_counter() - started)
    return recordings


def close_mapper(mapper: Mapper[Any]) -> None:
    """Release what the mapper holds (the key store's connections), if anything."""
    getattr(mapper, "close", lambda: None)()


class ClinicStore:
    """What every context's application does with its store, mixed in before the library's class:
    the composition root's mapper (crypto-shredding), our transcodings, and each recorded
    transaction timed for ``store_observer`` and traced (``eventstore.append``)."""

    store_observer: StoreObserver | None = None
    group_commit: Any = None
    """``application.group_commit.GroupCommit`` (``CLINIC_GROUP_COMMIT=on``): saves of concurrent callers
    share a transaction. ``None``: each save is its own, as in the library."""

    def __init__(self, env: Any = None, *, mapper_factory: MapperFactory | None = None) -> None:
        self._mapper_factory = mapper_factory
        super().__init__(env)  # type: ignore[call-arg]

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording]:
        if self.group_commit is None or kwargs:
            return super().save(*objs, **kwargs)  # type: ignore[misc]
        return self.group_commit.save(*objs)

    def construct_mapper(self) -> Mapper[Any]:
        """The mapper from ``mapper_factory`` if one was given (see ``application/personal_data.py``)."""
        return construct_mapper_with(self, self._mapper_factory, super().construct_mapper)  # type: ignore[misc]

    def close(self) -> None:
        super().close()  # type: ignore[misc]
        close_mapper(self.mapper)  # type: ignore[attr-defined]

    def _record(self, processing_event: ProcessingEvent) -> list[Recording]:
        """Every save and every processed event is recorded here: timed for ``store_observer``, traced."""
        with recording_span(self, processing_event):
            return timed_record(self, super()._record, processing_event)  # type: ignore[misc]

    def register_transcodings(self, transcoder: Transcoder) -> None:
        super().register_transcodings(transcoder)  # type: ignore[misc]
        register_clinic_transcodings(transcoder)


class ClinicProcessApplication(ClinicStore, ProcessApplication):
    """A process application whose reactions carry the cause's correlation and saga ids.

    Its policy runs with the metadata of the event it reacts to, with this
    application's service name as the actor, so every event it records names its
    cause without the policy threading anything by hand.
    """

    clock: Callable[[], datetime] = staticmethod(utc_now)

    def follow(self, name: str, log: NotificationLog) -> None:
        """Follow ``name``, decoding its events with a mapper like this application's own.

        The library would build the leader's mapper from the mapper's class alone, without the
        key store a crypto-shredding mapper needs.
        """
        if self._mapper_factory is None:
            super().follow(name, log)
            return
        self.readers[name] = NotificationLogReader(log, section_size=self.pull_section_size)
        self.mappers[name] = self.construct_mapper()

    @property
    def actor(self) -> str:
        return f"service:{self.name.lower()}"

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        with processing_span(self.name, domain_event) as traceparent, \
                caused_by(domain_event, self.actor, traceparent):
            super().process_event(domain_event, tracking)

    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        """Ignore events this application does not react to."""
