"""The base of every event-processing application: clock, metadata, codecs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from eventsourcing.application import (
    AggregateNotFoundError,
    NotificationLog,
    ProcessingEvent,
    Repository,
    project_aggregate,
)
from eventsourcing.persistence import Mapper, Recording, Tracking, Transcoder, Transcoding
from eventsourcing.system import NotificationLogReader, ProcessApplication

from domain.metadata import caused_by
from process_managers.spans import spans

TRACKINGS = "trackings"
"""The keyword a batch's tracking rows travel under to the recorder (``infrastructure/event_store.py``)."""


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


class OverlayRepository(Repository):
    """The library's repository, but while a batch is processed an aggregate the batch already changed
    is returned, to the thread processing it, as the batch left it (the store has it once the batch
    commits; other threads, such as request handlers, keep reading the store)."""

    _local: threading.local

    def get(self, aggregate_id: Any, *, version: int | None = None, **kwargs: Any) -> Any:
        overlay = getattr(self._local, "overlay", None)
        if overlay is not None and version is None and aggregate_id in overlay:
            found = overlay[aggregate_id]
            if found is ABSENT:
                raise AggregateNotFoundError(f"Aggregate {aggregate_id!r} not found.")
            return found
        return super().get(aggregate_id, version=version, **kwargs)

    def preload(self, aggregate_ids: Iterable[Any], recorder: Any) -> None:
        """Load these aggregates into this thread's batch overlay with one query (those with no events as
        absent), where ``recorder`` can (``select_events_of``); aggregates the cache already trusts are skipped."""
        overlay = getattr(self._local, "overlay", None)
        select = getattr(recorder, "select_events_of", None)
        if overlay is None or select is None:
            return
        wanted = [i for i in dict.fromkeys(aggregate_ids) if i not in overlay and not self._trusted(i)]
        if not wanted:
            return
        stored = select(wanted)
        mapper = self.event_store.mapper
        for aggregate_id in wanted:
            events = [mapper.to_domain_event(event) for event in stored.get(aggregate_id, ())]
            overlay[aggregate_id] = project_aggregate(None, events) if events else ABSENT

    def _trusted(self, aggregate_id: Any) -> bool:
        """Whether the cache holds this aggregate and needs no query for it (no fast-forward)."""
        if self.cache is None or self.fastforward:
            return False
        try:
            self.cache.get(aggregate_id)
        except KeyError:
            return False
        return True

    @contextmanager
    def batch(self) -> Iterator[dict[Any, Any]]:
        """Within the block, aggregates put in the yielded dict are what ``get`` returns to this thread."""
        overlay: dict[Any, Any] = {}
        self._local.overlay = overlay
        try:
            yield overlay
        finally:
            self._local.overlay = None

    @classmethod
    def over(cls, library: Repository) -> OverlayRepository:
        """This repository with the settings (cache, snapshots) of the one the library built."""
        repository = cls.__new__(cls)
        repository.__dict__.update(library.__dict__)
        repository._local = threading.local()
        return repository


ABSENT = object()
"""In a batch's overlay: this aggregate has no events (its ``get`` raises ``AggregateNotFoundError``)."""


@dataclass(frozen=True)
class Job:
    """One event to process and its position in its leader's log; ``around`` (if given) is entered
    around its processing (the transport's span and log context for the message that carried it)."""

    event: Any
    tracking: Tracking
    around: Callable[[], AbstractContextManager[Any]] | None = None


_ALSO_SAVE: ContextVar[tuple[Any, Callable[[tuple[Any, ...]], Any]] | None] = ContextVar("also_save", default=None)


@contextmanager
def also_saving(app: Any, extra: Callable[[tuple[Any, ...]], Any]) -> Iterator[None]:
    """The next ``save`` of ``app`` in this context also records ``extra(aggregates saved)`` in the same
    transaction, once: a command's receipt (``application/idempotency.py``) commits with its events or
    not at all, whatever command it is."""
    token = _ALSO_SAVE.set((app, extra))
    try:
        yield
    finally:
        _ALSO_SAVE.reset(token)


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
        objs = self._also_saving(objs)
        if self.group_commit is None or kwargs:
            recordings: list[Recording] = super().save(*objs, **kwargs)  # type: ignore[misc]
        else:
            recordings = self.group_commit.save(*objs)
        if recordings:
            self._saved().position = recordings[-1].notification.id
        return recordings

    def _also_saving(self, objs: tuple[Any, ...]) -> tuple[Any, ...]:
        pending = _ALSO_SAVE.get()
        if pending is None or pending[0] is not self:
            return objs
        _ALSO_SAVE.set(None)
        return (*objs, pending[1](objs))

    def saved_position(self) -> int | None:
        """The notification id of the last event this thread's last ``save`` recorded, once (then ``None``):
        a command's read-your-writes position, without asking the store for its head."""
        saved = self._saved()
        position, saved.position = getattr(saved, "position", None), None
        return position

    def _saved(self) -> threading.local:
        local = self.__dict__.get("_saved_local")
        if local is None:
            local = self.__dict__.setdefault("_saved_local", threading.local())
        return local

    def construct_repository(self) -> OverlayRepository:
        """The library's repository, able to see the aggregates a batch has changed (``record_batch``)."""
        return OverlayRepository.over(super().construct_repository())  # type: ignore[misc]

    def construct_mapper(self) -> Mapper[Any]:
        """The mapper from ``mapper_factory`` if one was given (see ``application/personal_data.py``)."""
        return construct_mapper_with(self, self._mapper_factory, super().construct_mapper)  # type: ignore[misc]

    def close(self) -> None:
        super().close()  # type: ignore[misc]
        close_mapper(self.mapper)  # type: ignore[attr-defined]

    def _record(self, processing_event: ProcessingEvent) -> list[Recording]:
        """Every save and every processed event is recorded here: timed for ``store_observer``, traced."""
        with spans().recording(self, processing_event):
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
        with spans().processing(self.name, domain_event) as traceparent, \
                caused_by(domain_event, self.actor, traceparent):
            super().process_event(domain_event, tracking)

    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        """Ignore events this application does not react to."""

    def aggregates_for(self, domain_event: Any) -> Iterable[Any]:
        """The aggregates the policy loads for ``domain_event``: a batch loads them all with one query first.
        A hint only: one left out is loaded when the policy asks for it."""
        return ()

    def record_batch(self, jobs: Sequence[Job], exact: bool = True) -> list[Recording]:
        """Run the policy on each job in order, then record every event they produced with the jobs'
        tracking in one transaction; nothing is recorded if any job raises.

        Each job sees the aggregates as the earlier jobs of the batch left them. ``exact``: a tracking
        row per job (a broker's deliveries: duplicates are then refused one by one, in any order);
        else one row, the last job's (in-order delivery from one leader's log)."""
        if exact and not hasattr(self.recorder, "processed"):
            raise TypeError(f"{type(self.recorder).__name__} cannot record a tracking row per job: use a store "
                            "with exact tracking (SQLite or PostgreSQL, as Settings configures them)")
        batch: ProcessingEvent = ProcessingEvent()
        traces: list[str | None] = []
        with self.processing_lock, self.repository.batch() as changed:
            self.repository.preload((i for job in jobs for i in self.aggregates_for(job.event)), self.recorder)
            for job in jobs:
                processing, traceparent = self._run_policy(job)
                changed.update(processing.aggregates)
                batch.events.extend(processing.events)
                batch.aggregates.update(processing.aggregates)
                traces.append(traceparent)
            if exact:
                batch.saved_kwargs[TRACKINGS] = [job.tracking for job in jobs]
            else:
                batch.tracking = jobs[-1].tracking
            with spans().in_batch(traces):
                recordings = self._record(batch)
        self._take_snapshots(batch)
        self._notify(recordings)
        return recordings

    def _run_policy(self, job: Job) -> tuple[ProcessingEvent, str | None]:
        """The job's event through the policy; its new events, and the trace they were recorded in."""
        processing: ProcessingEvent = ProcessingEvent(job.tracking)
        with job.around() if job.around is not None else nullcontext(), \
                spans().processing(self.name, job.event) as traceparent, caused_by(job.event, self.actor, traceparent):
            self.policy(job.event, processing)
        return processing, traceparent
