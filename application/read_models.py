"""Queries served from the projections' views: never from aggregates.

Each answer reads the version of the projection operators made serving (blue-green
rebuilds), and every answer can say how fresh it is: the projection's position in its
leaders' logs and how many events it still has to apply.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from time import monotonic, sleep
from typing import TypeVar
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError

from application.view_changes import POLL_SECONDS, ViewChanges
from application.views import (
    ConsultationView,
    DoctorListing,
    DoctorPage,
    Saga,
    SagaListing,
    SagaPage,
    SagaStep,
    WebhookDeliveryListing,
    WebhookDeliveryPage,
)
from domain.base import NotFoundError
from domain.consultation import ConsultationStatus
from domain.slot import SlotStatus
from projections.catalog import BY_NAME
from projections.consultation_detail import consultation_key
from projections.doctor_agenda import doctor_agenda_key
from projections.doctor_directory import doctor_key, doctors_key
from projections.doctor_slots import doctor_slots_key, slot_key
from projections.patient_consultations import patient_consultations_key
from projections.saga_list import SAGAS, saga_listing_key
from projections.saga_status import saga_key, saga_steps_key
from projections.store import ServingRead, ViewStore
from projections.webhook_deliveries import deliveries_key, delivery_key

log = logging.getLogger(__name__)
T = TypeVar("T")

HIDDEN_FROM_AGENDA = {"REJECTED", "CANCELLED"}
HEADS_RETRY_SECONDS = 5.0
"""After the event store failed to tell its heads, how long reads go without freshness before asking again."""
CONSULTATION_CACHE_SIZE = 50_000
"""Consultations a process keeps in memory (about 1 kB each)."""
MAX_PAGE = 100


@dataclass(frozen=True)
class SlotListing:
    slot_id: UUID
    doctor_id: UUID
    start: datetime
    duration_minutes: int
    status: str


@dataclass(frozen=True)
class Page:
    items: list[ConsultationView]
    next_cursor: str | None


@dataclass(frozen=True)
class Freshness:
    """How far behind the event stores the views behind an answer are."""

    position: int
    head: int

    @property
    def lag(self) -> int:
        return max(self.head - self.position, 0)


@dataclass(frozen=True)
class ConsultationRead:
    """A consultation's view and the freshness of the version it was read from."""

    view: ConsultationView
    freshness: Freshness | None


DETAIL = "consultation_detail"
UNDECIDED = ConsultationStatus.REQUESTED.value
"""A consultation's status while its booking saga has not decided."""


class ReadModels:
    """The read side: consultation detail, a patient's consultations, agendas, free slots, sagas.

    With ``changes`` (the store's change feed, ``application/view_changes.py``) consultations are kept
    in a per-process cache, each entry served only while no change to its key has been told since it
    was read, and waits wake on changes instead of polling the store."""

    def __init__(self, store: ViewStore, heads: Mapping[str, Callable[[], int | None]] | None = None,
                 wait_seconds: float = 1.0, changes: ViewChanges | None = None,
                 cache_size: int = CONSULTATION_CACHE_SIZE) -> None:
        self.store = store
        self.heads = dict(heads or {})
        """The head of each leader's log this process can see (leader name → notification id)."""
        self.wait_seconds = wait_seconds
        self.changes = changes
        self.stop_watching: Callable[[], None] | None = None
        """Stops the store telling ``changes`` (set by the composition root that started it)."""
        self._cache: OrderedDict[str, tuple[int, ServingRead]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._heads_unanswered_until = 0.0

    def consultation(self, consultation_id: UUID) -> ConsultationView:
        """A consultation; one just accepted is waited for briefly while the views catch up."""
        return self.consultation_read(consultation_id).view

    def consultation_read(self, consultation_id: UUID) -> ConsultationRead:
        """A consultation and how fresh its view is: from the cache, else the serving version, the view
        and that version's positions in one store read (one Redis round trip); then the leaders' heads."""
        key = consultation_key(consultation_id)
        read = self._cached(key) or self._read_and_cache(key)
        if not read.fields and self.catch_up(DETAIL):
            read = self._read_and_cache(key)
        if not read.fields:
            raise NotFoundError(f"consultation {consultation_id} not found (a just-accepted booking may "
                                "take a moment to appear)")
        return self._consultation_read(read)

    def cached_consultation(self, consultation_id: UUID) -> ConsultationRead | None:
        """The consultation from this process's cache, if a current copy is there (no I/O)."""
        read = self._cached(consultation_key(consultation_id))
        return self._consultation_read(read) if read is not None and read.fields else None

    async def consultation_read_async(self, consultation_id: UUID) -> ConsultationRead:
        """``consultation_read`` for a coroutine: from the cache at once, else from the store in a thread."""
        cached = self.cached_consultation(consultation_id)
        return cached if cached is not None else await asyncio.to_thread(self.consultation_read, consultation_id)

    async def decided(self, consultation_id: UUID, timeout: float) -> ConsultationRead:
        """The consultation once its saga has decided (no longer ``REQUESTED``), or as it is after
        ``timeout`` seconds; woken by the change feed (``Prefer: wait``)."""
        latest = [await self.consultation_read_async(consultation_id)]

        async def decided_now() -> bool:
            latest[0] = await self.consultation_read_async(consultation_id)
            return latest[0].view.status != UNDECIDED

        if latest[0].view.status == UNDECIDED and self.changes is not None:
            await self.changes.wait_async(decided_now, timeout, topic=(DETAIL, consultation_key(consultation_id)))
        return latest[0]

    async def changes_of(self, consultation_id: UUID, since: int | None, timeout: float) -> ConsultationRead:
        """The consultation once its version differs from ``since`` (at once if it already does), or as it
        is after ``timeout`` seconds (a server-sent events stream's next event)."""
        latest = [await self.consultation_read_async(consultation_id)]

        async def moved() -> bool:
            latest[0] = await self.consultation_read_async(consultation_id)
            return latest[0].view.version != since

        if since is not None and latest[0].view.version == since and self.changes is not None:
            await self.changes.wait_async(moved, timeout, topic=(DETAIL, consultation_key(consultation_id)))
        return latest[0]

    def close(self) -> None:
        """Stop following the store's change feed (the composition root started it)."""
        if self.stop_watching is not None:
            self.stop_watching()
            self.stop_watching = None

    def _cached(self, key: str) -> ServingRead | None:
        stamp = self.changes.stamp(DETAIL, key) if self.changes is not None else None
        if stamp is None:
            return None
        with self._cache_lock:
            entry = self._cache.get(key)
            if entry is None or entry[0] != stamp:
                return None
            self._cache.move_to_end(key)
            return entry[1]

    def _read_and_cache(self, key: str) -> ServingRead:
        stamp = self.changes.stamp(DETAIL, key) if self.changes is not None else None  # before the read
        read = self._serving_read(DETAIL, key)
        if stamp is not None and read.fields:
            with self._cache_lock:
                self._cache[key] = (stamp, read)
                self._cache.move_to_end(key)
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return read

    def _consultation_read(self, read: ServingRead) -> ConsultationRead:
        """The view and its freshness: the read's positions, or later ones the change feed told."""
        positions = dict(read.positions)
        if self.changes is not None:
            for leader, position in read.positions.items():
                told = self.changes.position(DETAIL, read.version, leader)
                positions[leader] = max(position, told or 0)
        return ConsultationRead(_consultation(read.fields), self._freshness_at(DETAIL, positions))

    def patient_consultations(self, patient_id: UUID, status: str | None = None, start_from: datetime | None = None,
                              start_to: datetime | None = None, cursor: str | None = None, limit: int = 20) -> Page:
        """Newest first; ``cursor`` continues after the last item of the previous page."""
        low = start_from.timestamp() if start_from else float("-inf")
        high = start_to.timestamp() if start_to else float("inf")
        items, next_cursor = self._page("patient_consultations", patient_consultations_key(patient_id), low, high,
                                        cursor, limit, self._maybe_consultation,
                                        lambda view: status is None or view.status == status)
        return Page(items, next_cursor)

    def doctors(self, specialty: str | None = None, active: bool | None = None, cursor: str | None = None,
                limit: int = 20) -> DoctorPage:
        """The directory, newest registered first; ``cursor`` continues after the last item of the previous page."""
        items, next_cursor = self._page("doctor_directory", doctors_key(specialty), float("-inf"), float("inf"),
                                        cursor, limit, self._maybe_doctor,
                                        lambda doctor: active is None or doctor.active == active)
        return DoctorPage(items, next_cursor)

    def doctor(self, doctor_id: UUID) -> DoctorListing:
        doctor = self._maybe_doctor(str(doctor_id))
        if doctor is None:
            raise NotFoundError(f"doctor {doctor_id} not found")
        return doctor

    def _maybe_doctor(self, doctor_id: str) -> DoctorListing | None:
        fields = self._fields("doctor_directory", doctor_key(doctor_id))
        return DoctorListing(UUID(fields["doctor_id"]), fields["name"], fields["specialty"],
                             fields["active"] == "true") if fields else None

    def sagas(self, keep: Callable[[SagaListing], bool] = lambda _: True, cursor: str | None = None,
              limit: int = 20) -> SagaPage:
        """Booking and reschedule sagas, newest first, those ``keep`` keeps (by state, whether stuck…)."""
        items, next_cursor = self._page("saga_list", SAGAS, float("-inf"), float("inf"), cursor, limit,
                                        self._maybe_saga_listing, keep)
        return SagaPage(items, next_cursor)

    def sagas_position(self) -> int | None:
        """How far into the booking log the saga views are, as this process was last told (``None``: not yet)."""
        if self.changes is None:
            return None
        return self.changes.position("saga_status", BY_NAME["saga_status"].version, "Booking")

    async def sagas_changed(self, since: int | None, timeout: float) -> int | None:
        """The saga views' position once it moves past ``since``, or after ``timeout`` (woken by the change
        feed, not by polling)."""
        if self.changes is not None:
            await self.changes.wait_async(lambda: self.sagas_position() != since, timeout)
        return self.sagas_position()

    def saga_stamp(self, saga_id: UUID) -> int | None:
        """A stamp of the saga's view that moves whenever the view changes (``None``: no change feed)."""
        return None if self.changes is None else self.changes.stamp("saga_status", saga_key(saga_id))

    async def saga_changed(self, saga_id: UUID, since: int | None, timeout: float) -> int | None:
        """The saga view's stamp once it moves past ``since``, or after ``timeout`` (woken by the change feed)."""
        if self.changes is not None:
            await self.changes.wait_async(lambda: self.saga_stamp(saga_id) != since, timeout,
                                          topic=("saga_status", saga_key(saga_id)))
        return self.saga_stamp(saga_id)

    def saga_listing(self, saga_id: UUID) -> SagaListing:
        listing = self._maybe_saga_listing(str(saga_id))
        if listing is None:
            raise NotFoundError(f"saga {saga_id} not found")
        return listing

    def _maybe_saga_listing(self, saga_id: str) -> SagaListing | None:
        listing = self._fields("saga_list", saga_listing_key(saga_id))
        status = self._fields("saga_status", saga_key(saga_id))
        if not listing or not status:
            return None
        steps = [json.loads(item) for item in
                 self.store.list_items("saga_status", self._version("saga_status"), saga_steps_key(saga_id))]
        return _saga_listing(saga_id, listing, status, steps)

    def webhook_deliveries(self, subscription_id: UUID, status: str | None = None, cursor: str | None = None,
                           limit: int = 20) -> WebhookDeliveryPage:
        """A subscription's delivery log, newest first (``status``: only pending, delivered or failed ones)."""
        items, next_cursor = self._page("webhook_deliveries", deliveries_key(subscription_id), float("-inf"),
                                        float("inf"), cursor, limit, self._maybe_delivery,
                                        lambda delivery: status is None or delivery.status == status)
        return WebhookDeliveryPage(items, next_cursor)

    def _maybe_delivery(self, delivery_id: str) -> WebhookDeliveryListing | None:
        fields = self._fields("webhook_deliveries", delivery_key(delivery_id))
        return _delivery(fields) if fields else None

    def agenda(self, doctor_id: UUID, day: date) -> list[ConsultationView]:
        """A doctor's consultations that day, in time order (rejected and cancelled ones left out)."""
        index = self._index("doctor_agenda", doctor_agenda_key(doctor_id, day.isoformat()), reverse=False)
        views = [self._maybe_consultation(member) for member, _ in index]
        return [v for v in views if v is not None and v.status not in HIDDEN_FROM_AGENDA]

    def slots(self, doctor_id: UUID, day: date, available_only: bool = False) -> list[SlotListing]:
        """A doctor's slots that day, in time order; ``available_only``: the open ones a patient can pick."""
        index = self._index("doctor_slots", doctor_slots_key(doctor_id, day.isoformat()), reverse=False)
        keys = [slot_key(member) for member, _ in index]
        hashes = self.store.get_many_fields("doctor_slots", self._version("doctor_slots"), keys) if keys else []
        listings = [_slot(fields) for fields in hashes if fields]
        return [s for s in listings if s.status == SlotStatus.OPEN] if available_only else listings

    def saga(self, saga_id: UUID) -> Saga:
        version = self._version("saga_status")
        fields = self.store.get_fields("saga_status", version, saga_key(saga_id))
        if not fields:
            raise NotFoundError(f"saga {saga_id} not found")
        steps = [json.loads(item) for item in self.store.list_items("saga_status", version, saga_steps_key(saga_id))]
        listed = self._fields("saga_list", saga_listing_key(str(saga_id)))
        listing = _saga_listing(str(saga_id), listed, fields, steps) if listed else None
        saga = Saga(UUID(fields["saga_id"]), UUID(fields["consultation_id"]), fields["state"],
                    fields.get("rejection_reason") or None, datetime.fromisoformat(fields["deadline"]),
                    [SagaStep(s["name"], s["status"], datetime.fromisoformat(s["at"])) for s in steps])
        if listing is None:
            return saga
        return replace(saga, kind=listing.kind, patient_id=listing.patient_id, doctor_id=listing.doctor_id,
                       started_at=listing.started_at, waiting_since=listing.waiting_since,
                       correlation_id=listing.correlation_id, trace_id=listing.trace_id)

    def freshness(self, *names: str) -> Freshness | None:
        """Position and head summed over the named projections' leaders (``None``: a head is not visible here)."""
        pairs = [(name, leader) for name in names for leader in BY_NAME[name].leaders]
        if any(leader not in self.heads for _, leader in pairs):
            return None
        positions = sum(self.store.position(name, self._version(name), leader) for name, leader in pairs)
        head = self._head(leader for _, leader in pairs)
        return None if head is None else Freshness(positions, head)

    def _freshness_at(self, name: str, positions: Mapping[str, int]) -> Freshness | None:
        """``freshness(name)`` from positions already read (``None``: a head is not visible here)."""
        leaders = BY_NAME[name].leaders
        if any(leader not in self.heads for leader in leaders):
            return None
        head = self._head(leaders)
        return None if head is None else Freshness(sum(positions[leader] for leader in leaders), head)

    def _head(self, leaders: Iterable[str]) -> int | None:
        """The leaders' heads summed; ``None`` while their event store does not answer (a read from the views
        is then served without its freshness, and the store is not asked again for ``HEADS_RETRY_SECONDS``)."""
        if monotonic() < self._heads_unanswered_until:
            return None
        try:
            return sum(self.heads[leader]() or 0 for leader in leaders)
        except (OperationalError, InterfaceError) as error:
            self._heads_unanswered_until = monotonic() + HEADS_RETRY_SECONDS
            log.warning("serving reads without freshness for %ss: the event store did not answer (%s)",
                        HEADS_RETRY_SECONDS, error)
            return None

    def reached(self, leader: str, notification_id: int) -> bool:
        """Whether every view fed by ``leader`` has applied its events up to ``notification_id``."""
        return all(self.store.position(name, self._version(name), leader) >= notification_id
                   for name in self._names_following(leader))

    def wait_for(self, positions: list[tuple[str, int]], timeout: float | None = None) -> bool:
        """Read-your-writes: wait (bounded) until the views reached these (leader, id) positions; woken by
        the change feed (polling the store without one)."""
        timeout = self.wait_seconds if timeout is None else timeout
        reached = self._reached_all(positions)
        if self.changes is not None:
            return self.changes.wait(reached, timeout)
        deadline = monotonic() + timeout
        while not reached():
            if monotonic() >= deadline:
                return False
            sleep(POLL_SECONDS)
        return True

    async def wait_for_async(self, positions: list[tuple[str, int]], timeout: float | None = None) -> bool:
        """``wait_for`` for a coroutine: the store is read in a thread, at first and while the feed is down;
        otherwise the positions the feed tells decide."""
        timeout = self.wait_seconds if timeout is None else timeout
        if self.changes is None:
            return await asyncio.to_thread(self.wait_for, positions, timeout)
        versions: dict[str, int] = {}

        async def reached() -> bool:
            if versions and self._reached_as_told(positions, versions):
                return True
            if versions and self.changes.live:  # type: ignore[union-attr]
                return False
            versions.update({name: self._version(name) for name in self._followers_of(positions)})
            return await asyncio.to_thread(self._reached_all(positions))

        return await self.changes.wait_async(reached, timeout)

    def _reached_all(self, positions: list[tuple[str, int]]) -> Callable[[], bool]:
        for leader, _ in positions:
            self._names_following(leader)  # an unknown log is refused before any wait
        return lambda: all(self.reached(leader, notification_id) for leader, notification_id in positions)

    def _reached_as_told(self, positions: list[tuple[str, int]], versions: dict[str, int]) -> bool:
        assert self.changes is not None
        for leader, notification_id in positions:
            for name in self._names_following(leader):
                told = self.changes.position(name, versions[name], leader)
                if told is None or told < notification_id:
                    return False
        return True

    def _followers_of(self, positions: list[tuple[str, int]]) -> set[str]:
        return {name for leader, _ in positions for name in self._names_following(leader)}

    @staticmethod
    def _names_following(leader: str) -> list[str]:
        names = [name for name, projection in BY_NAME.items() if leader in projection.leaders]
        if not names:
            raise UnknownPositionError(f"no read model follows {leader!r}")
        return names

    def catch_up(self, *names: str) -> bool:
        """Wait (at most ``wait_seconds``) until the named views reached the heads seen now; True if they did."""
        target = self.freshness(*names)
        if target is None or target.lag == 0:
            return False
        def caught_up() -> bool:
            current = self.freshness(*names)
            return current is not None and current.position >= target.head

        if self.changes is not None:
            return self.changes.wait(caught_up, self.wait_seconds)
        deadline = monotonic() + self.wait_seconds
        while monotonic() < deadline:
            if caught_up():
                return True
            sleep(POLL_SECONDS)
        return False

    def _version(self, name: str) -> int:
        return self.store.serving_version(name) or BY_NAME[name].version

    def _serving_read(self, name: str, key: str) -> ServingRead:
        return self.store.read_serving(name, BY_NAME[name].version, key, BY_NAME[name].leaders)

    def _page(self, name: str, key: str, low: float, high: float, cursor: str | None, limit: int,
              load: Callable[[str], T | None], keep: Callable[[T], bool]) -> tuple[list[T], str | None]:
        """One page of an index, highest score first, between ``low`` and ``high``: the members ``load`` finds
        and ``keep`` keeps, and the cursor after the last (``None``: no more). ``cursor`` continues after the
        last item of the previous page."""
        limit = max(1, min(limit, MAX_PAGE))
        high, after = _decode_cursor(cursor) if cursor else (high, None)
        items: list[T] = []
        for member, score in self._index(name, key, low, high):
            if after is not None and score == high and member >= after:
                continue
            item = load(member)
            if item is not None and keep(item):
                items.append(item)
                if len(items) == limit:
                    return items, _encode_cursor(score, member)
        return items, None

    def _fields(self, name: str, key: str) -> dict[str, str]:
        return self.store.get_fields(name, self._version(name), key)

    def _index(self, name: str, key: str, low: float = float("-inf"), high: float = float("inf"),
               reverse: bool = True) -> list[tuple[str, float]]:
        return self.store.range_by_score(name, self._version(name), key, min=low, max=high, reverse=reverse)

    def _maybe_consultation(self, consultation_id: str) -> ConsultationView | None:
        fields = self._fields("consultation_detail", consultation_key(consultation_id))
        return _consultation(fields) if fields else None


def _saga_listing(saga_id: str, listing: Mapping[str, str], status: Mapping[str, str],
                  steps: list[dict[str, str]]) -> SagaListing:
    """A saga as lists show it, from its saga-list entry, its status and its steps."""
    started = datetime.fromisoformat(listing["started_at"])
    return SagaListing(UUID(saga_id), listing["kind"], listing["aggregate"], UUID(listing["consultation_id"]),
                       UUID(listing["patient_id"]),
                       UUID(listing["doctor_id"]), started, status["state"], status.get("rejection_reason") or None,
                       datetime.fromisoformat(status["deadline"]), _on_this_step_since(steps, started),
                       listing.get("correlation_id") or None, listing.get("trace_id") or None)


def _on_this_step_since(steps: list[dict[str, str]], started: datetime) -> datetime:
    """When the saga's last step was first recorded (a step asked again and again counts from the first)."""
    if not steps:
        return started
    first = len(steps) - 1
    while first > 0 and steps[first - 1]["name"] == steps[-1]["name"]:
        first -= 1
    return datetime.fromisoformat(steps[first]["at"])


def _delivery(fields: dict[str, str]) -> WebhookDeliveryListing:
    def moment(name: str) -> datetime | None:
        return datetime.fromisoformat(fields[name]) if fields.get(name) else None

    code = fields.get("last_status_code")
    return WebhookDeliveryListing(
        UUID(fields["delivery_id"]), UUID(fields["subscription_id"]), fields["event_type"],
        UUID(fields["consultation_id"]), datetime.fromisoformat(fields["created_at"]), fields["status"],
        int(fields.get("attempts") or 0), moment("last_attempt_at"), int(code) if code else None,
        fields.get("last_error") or None, moment("next_attempt_at"))


def _consultation(fields: dict[str, str]) -> ConsultationView:
    return ConsultationView(
        UUID(fields["consultation_id"]), UUID(fields["patient_id"]), UUID(fields["doctor_id"]),
        datetime.fromisoformat(fields["start"]), fields["status"], fields["reason"],
        fields.get("rejection_reason") or None, int(fields["version"]),
        datetime.fromisoformat(fields["rescheduling_to"]) if fields.get("rescheduling_to") else None,
        fields.get("reschedule_failure") or None)


def _slot(fields: dict[str, str]) -> SlotListing:
    return SlotListing(UUID(fields["slot_id"]), UUID(fields["doctor_id"]), datetime.fromisoformat(fields["start"]),
                       int(fields["duration_minutes"]), fields["status"])


def _encode_cursor(score: float, member: str) -> str:
    return f"{score!r}~{member}"


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        score, member = cursor.split("~", 1)
        return float(score), member
    except ValueError:
        raise CursorError("the cursor is not one this API returned") from None


class CursorError(ValueError):
    """A pagination cursor that this API did not hand out."""


class UnknownPositionError(ValueError):
    """A position names a log no read model follows."""


def parse_positions(text: str) -> list[tuple[str, int]]:
    """``"Consultations:42,Scheduling:7"`` (as commands return them) → ``[("Consultations", 42), …]``."""
    positions = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        leader, _, number = part.partition(":")
        if not leader or not number.isdigit():
            raise UnknownPositionError(f"not a position: {part!r} (expected <Log>:<notification id>)")
        positions.append((leader, int(number)))
    return positions



