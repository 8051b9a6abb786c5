"""Projection rebuild: how fast the read models are rebuilt from the notification logs into Redis.

Run with ``clinic bench --only projection_rebuild`` (``--quick``: 20k events instead of 100k).

Records the events (real aggregates, the booking happy path, saved in big batches into the
clinic's SQLite applications), then measures in the same run:
  (a) reading + decoding every notification log (the floor any runner pays),
  (b) rebuilding all projections into Redis with the batch runner (batch 1000; the full run
      also tries 500, 2000 and 5000),
  (c) the naive baseline: one event per Redis transaction, each waited for, on a sample,
and the same rebuild into the memory store, to separate Redis's share. Compare the RATIOS:
these machines are noisy. Keys go under a fresh prefix, deleted at the end (never FLUSHALL).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from application.bootstrap import build_applications
from application.settings import Settings
from domain.consultation import Consultation
from domain.slot import Slot
from infrastructure.read_models.redis_store import RedisViewStore, glob_escape
from process_managers.booking_saga import BookingSaga
from projections.catalog import ALL_PROJECTIONS
from projections.memory_store import MemoryViewStore
from projections.runner import ProjectionRunner

from benchmarks.harness import Figure, benchmark
from benchmarks.servers import REDIS_URL

EVENTS_PER_BOOKING = 9  # consultation 2, slot 3, saga 4
SAVE_EVERY = 500  # bookings per save (one transaction per application)
DEFAULT_BATCH = 1000
OTHER_BATCHES = (500, 2000, 5000)  # full run only
TARGET = 0.9  # of the read + decode floor: the rebuild is bounded by reading the logs


def booking(i: int, start: datetime) -> tuple[Consultation, Slot, BookingSaga]:
    """One booking's aggregates, taken through the happy path."""
    patient, doctor = uuid.UUID(int=i % 500 + 1), uuid.UUID(int=10_000 + i % 40)
    moment = start + timedelta(minutes=30 * i)
    consultation = Consultation(patient_id=patient, doctor_id=doctor, start=moment, reason="check-up")
    slot = Slot(doctor_id=doctor, start=moment, duration_minutes=30)
    saga = BookingSaga(consultation_id=consultation.id, patient_id=patient, doctor_id=doctor, slot_id=slot.id,
                       deadline=moment)
    slot.hold(saga.id, moment, start)
    saga.record_slot_held()
    saga.record_registrants_valid()
    slot.book(saga.id)
    saga.record_slot_booked()
    consultation.confirm()
    return consultation, slot, saga


def record(apps: dict[str, Any], bookings: int) -> int:
    start = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)
    for first in range(0, bookings, SAVE_EVERY):
        made = [booking(i, start) for i in range(first, min(first + SAVE_EVERY, bookings))]
        apps["Consultations"].save(*(c for c, _, _ in made))
        apps["Scheduling"].save(*(s for _, s, _ in made))
        apps["Booking"].save(*(g for _, _, g in made))
    return sum(apps[name].recorder.max_notification_id() or 0 for name in ("Consultations", "Scheduling", "Booking"))


def read_and_decode(apps: dict[str, Any]) -> int:
    count = 0
    for name in ("Consultations", "Scheduling", "Booking"):
        app, position = apps[name], 0
        while batch := app.recorder.select_notifications(start=position, limit=2000, inclusive_of_start=False):
            count += len([app.mapper.to_domain_event(n) for n in batch])
            position = batch[-1].id
    return count


def timed(action: Any) -> tuple[Any, float]:
    began = time.perf_counter()
    result = action()
    return result, time.perf_counter() - began


def script_stats(store: RedisViewStore) -> tuple[int, int]:
    """Scripts run and microseconds Redis spent in them, so far (INFO commandstats; never reset)."""
    stats = store.client.info("commandstats")
    calls = usec = 0
    for command in ("cmdstat_evalsha", "cmdstat_eval"):
        calls, usec = calls + stats.get(command, {}).get("calls", 0), usec + stats.get(command, {}).get("usec", 0)
    return calls, usec


def naive(runner: ProjectionRunner, rounds: int) -> int:
    """One notification per leader per round, each applied and waited for (no deferred replies)."""
    return sum(runner.step() for _ in range(rounds))


def redis_rebuild(apps: dict[str, Any], batch_size: int, naive_rounds: int = 0) -> dict[str, float]:
    """Events read, seconds, keys written, scripts and Redis seconds in them, into a fresh prefix (deleted)."""
    store = RedisViewStore.from_url(REDIS_URL, f"bench:views:{uuid.uuid4().hex}:")
    try:
        runner = ProjectionRunner(apps, store, ALL_PROJECTIONS, batch_size)
        calls, usec = script_stats(store)
        events, seconds = timed(lambda: runner.catch_up() if not naive_rounds else naive(runner, naive_rounds))
        after_calls, after_usec = script_stats(store)
        keys = list(store.client.scan_iter(match=glob_escape(store.prefix) + "*", count=5000))
        for start in range(0, len(keys), 1000):
            store.client.unlink(*keys[start:start + 1000])
        return {"events": events, "seconds": seconds, "keys": len(keys), "scripts": after_calls - calls,
                "redis_seconds": (after_usec - usec) / 1e6}
    finally:
        store.close()


@benchmark("projection_rebuild", needs=("redis",), summary="read models rebuilt from the logs into Redis")
def projection_rebuild(quick: bool, scale: float = 1.0) -> list[Figure]:
    """Rebuild rate beside the read + decode floor, the naive design and the in-process store."""
    target = int((20_000 if quick else 100_000) * scale)
    with tempfile.TemporaryDirectory() as tmp:
        apps = build_applications(Settings(persistence="sqlite", data_dir=Path(tmp)))
        try:
            return measure(apps, target, quick, scale)
        finally:
            for app in apps.values():
                app.close()


def measure(apps: dict[str, Any], target: int, quick: bool, scale: float) -> list[Figure]:
    total = record(apps, max(1, target // EVENTS_PER_BOOKING))
    decoded, seconds = timed(lambda: read_and_decode(apps))
    floor = decoded / seconds
    run = redis_rebuild(apps, DEFAULT_BATCH)
    rate = run["events"] / run["seconds"]
    detail = (f"{total:,} events, {run['keys']:,} keys; Redis busy {run['redis_seconds']:.2f}s of "
              f"{run['seconds']:.2f}s in {run['scripts']} scripts")
    figures = [Figure("projection rebuild into Redis, batch 1000", rate, "events/s", "read + decode the logs",
                      floor, detail, f">= {TARGET}x baseline", rate >= TARGET * floor)]
    for size in () if quick else OTHER_BATCHES:
        other = redis_rebuild(apps, size)
        figures.append(Figure(f"projection rebuild into Redis, batch {size}", other["events"] / other["seconds"],
                              "events/s", "read + decode the logs", floor))
    memory = MemoryViewStore()
    events, seconds = timed(lambda: ProjectionRunner(apps, memory, ALL_PROJECTIONS, DEFAULT_BATCH).catch_up())
    figures.append(Figure("projection rebuild into Redis vs in-process store", rate, "events/s",
                          "rebuild into the in-process store", events / seconds, "above 1: Redis is not the bottleneck"))
    sample = redis_rebuild(apps, 1, naive_rounds=max(1, int((300 if quick else 1000) * scale)))
    figures.append(Figure("projection rebuild vs one event per Redis transaction", rate, "events/s",
                          "one event per transaction, waited for", sample["events"] / sample["seconds"],
                          f"naive sample of {sample['events']:,} events"))
    return figures
