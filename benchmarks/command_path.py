"""The command path: booking requests per second through our application layer, beside raw saves.

Ours is what ``POST /v1/consultations`` does once the body is decoded:
``ConsultationsApplication.request_consultation`` inside the request's event metadata (the
aggregate, its ``Requested`` event stamped with correlation, causation and actor, the sealing
mapper encrypting the reason with the patient's key and linking the consultation to them, the
save). The baseline is a plain ``eventsourcing.application.Application`` with the library's
defaults (default mapper, no sealing) saving the same aggregates, built beforehand, one per
save, on the same store. Both run with one thread and with eight.

On SQLite (files in a temporary directory) and on PostgreSQL (a schema of its own, dropped
after). The PostgreSQL target: our appends at least 3x the library's single-save rate.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eventsourcing.application import Application

from application.consultations import ConsultationsApplication
from application.group_commit import GroupCommit
from application.personal_data import mapper_factory, open_subject_keys
from application.settings import Settings
from domain.consultation import Consultation
from domain.metadata import event_metadata

from benchmarks import servers
from benchmarks.harness import Figure, benchmark

PATIENTS = 200
DOCTORS = 20
THREADS = 8
START = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)


class LibraryDefaults(Application):
    """The baseline: the library's application, mapper and transcoder, as shipped."""

    name = "LibraryDefaults"


def request(i: int) -> tuple[uuid.UUID, uuid.UUID, datetime, str]:
    """The i-th booking request's patient, doctor, start and reason."""
    return uuid.UUID(int=1 + i % PATIENTS), uuid.UUID(int=10_000 + i % DOCTORS), START + timedelta(minutes=30 * i), \
        "check-up"


@contextmanager
def as_request(patient: uuid.UUID) -> Iterator[None]:
    """The metadata the HTTP middleware sets for one request by ``patient``."""
    with event_metadata(correlation_id=uuid.uuid4().hex, causation_id=f"request:{uuid.uuid4()}",
                        actor=str(patient)):
        yield


def ours(app: ConsultationsApplication) -> Callable[[int], None]:
    def command(i: int) -> None:
        patient, doctor, start, reason = request(i)
        with as_request(patient):
            app.request_consultation(patient, doctor, start, reason)

    return command


def raw(app: Application, aggregates: Sequence[Consultation]) -> Callable[[int], None]:
    def save(i: int) -> None:
        app.save(aggregates[i])

    return save


def built(first: int, count: int) -> list[Consultation]:
    """The aggregates the baseline saves, made (with the same metadata) before the clock starts."""
    made = []
    for i in range(first, first + count):
        patient, doctor, start, reason = request(i)
        with as_request(patient):
            made.append(Consultation(patient_id=patient, doctor_id=doctor, start=start, reason=reason))
    return made


def rate(action: Callable[[int], None], first: int, count: int, threads: int) -> float:
    """Commands per second: ``action(i)`` for ``count`` values of i, on ``threads`` threads."""
    return timed(action, first, count, threads)[0]


def timed(action: Callable[[int], None], first: int, count: int, threads: int) -> tuple[float, float]:
    """Commands per second, and this process's CPU ms per command (every thread; not the server's)."""
    began, cpu = time.perf_counter(), time.process_time()
    if threads == 1:
        for i in range(first, first + count):
            action(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(action, range(first, first + count)))
    return count / (time.perf_counter() - began), 1000 * (time.process_time() - cpu) / count


def compare(settings: Settings, store: str, count: int) -> tuple[list[Figure], dict[str, float]]:
    """Ours and the baseline, one thread and eight, on the store ``settings`` name."""
    keys = open_subject_keys(settings, create_table=True)
    app = ConsultationsApplication(env=settings.eventsourcing_env(ConsultationsApplication.name, True),
                                   mapper_factory=mapper_factory(keys))
    library = LibraryDefaults(env=settings.eventsourcing_env(LibraryDefaults.name, True))
    try:
        warm = ours(app)
        for i in range(PATIENTS):  # every patient's data key exists, as after registration
            warm(i)
        rates: dict[str, float] = {}
        first = PATIENTS
        for threads in (1, THREADS):
            rates[f"ours_{threads}"] = rate(ours(app), first, count, threads)
            aggregates = built(0, count)
            rates[f"raw_{threads}"] = rate(raw(library, aggregates), 0, count, threads)
            first += count
        batch = built(0, count)
        began = time.perf_counter()
        for at in range(0, count, 10):
            library.save(*batch[at:at + 10])
        rates["raw_10_per_save"] = count / (time.perf_counter() - began)
        ab, group_notes = group_commit_ab(app, first, count)
        rates |= ab
    finally:
        app.close()
        library.close()
    figures = [Figure(f"command path, {store}, {threads} thread{'s' if threads > 1 else ''}",
                      rates[f"ours_{threads}"], "commands/s", f"library app.save, {threads} thread(s)",
                      rates[f"raw_{threads}"], f"{count} commands each") for threads in (1, THREADS)]
    figures.append(Figure(f"command path, {store}, {GROUP_THREADS} threads, group commit (CLINIC_GROUP_COMMIT=on)",
                          rates["grouped"], "commands/s", f"ours, {GROUP_THREADS} threads, a transaction per save",
                          rates["ungrouped"], group_notes))
    return figures, rates


GROUP_THREADS = 16
"""Concurrent callers in the group-commit A/B (an API process's worker threads; anyio's default is 40)."""


def group_commit_ab(app: ConsultationsApplication, first: int, count: int,
                    pairs: int = 2) -> tuple[dict[str, float], str]:
    """Ours with group commit beside ours without, ``GROUP_THREADS`` threads, interleaved (ABAB): the means,
    and notes on the runs."""
    runs: dict[str, list[tuple[float, float]]] = {"ungrouped": [], "grouped": []}
    batches = saves = 0
    for _ in range(pairs):
        for variant in ("ungrouped", "grouped"):
            group = GroupCommit(app) if variant == "grouped" else None
            app.group_commit = group
            runs[variant].append(timed(ours(app), first, count, GROUP_THREADS))
            first += count
            if group is not None:
                batches, saves = batches + group.batches, saves + count
    app.group_commit = None
    mean = {name: sum(rate for rate, _ in done) / len(done) for name, done in runs.items()}
    cpu = {name: sum(ms for _, ms in done) / len(done) for name, done in runs.items()}
    pair_ratios = ", ".join(f"{g[0] / u[0]:.2f}x" for u, g in zip(runs["ungrouped"], runs["grouped"], strict=True))
    notes = (f"{pairs} interleaved pairs of {count} commands, means; pair ratios {pair_ratios}; {saves / batches:.1f} "
             f"saves per transaction; client CPU {cpu['grouped']:.2f} vs {cpu['ungrouped']:.2f} ms/command")
    return {"grouped": mean["grouped"], "ungrouped": mean["ungrouped"],
            "grouped_cpu_ms": cpu["grouped"], "ungrouped_cpu_ms": cpu["ungrouped"]}, notes


@benchmark("command_path_sqlite", summary="booking commands/s through our application layer vs raw saves, SQLite")
def command_path_sqlite(quick: bool, scale: float = 1.0) -> list[Figure]:
    """Ours against the library's defaults on SQLite files."""
    with tempfile.TemporaryDirectory() as tmp:
        figures, _ = compare(Settings(persistence="sqlite", data_dir=Path(tmp)), "SQLite", _count(quick, scale))
    return figures


@benchmark("command_path_postgres", needs=("postgres",),
           summary="booking commands/s through our application layer vs raw saves, PostgreSQL")
def command_path_postgres(quick: bool, scale: float = 1.0) -> list[Figure]:
    """Ours against the library's defaults on PostgreSQL, plus the 3x target and group commit's ceiling."""
    with tempfile.TemporaryDirectory() as tmp, servers.postgres_schema("command") as schema:
        settings = Settings(persistence="postgres", data_dir=Path(tmp), create_tables=True,
                            database=servers.postgres_env(schema, pool_size=THREADS + 2))
        figures, rates = compare(settings, "PostgreSQL", _count(quick, scale))
    best = max(rates["ours_1"], rates[f"ours_{THREADS}"], rates["grouped"])
    figures.append(Figure("PostgreSQL appends, ours (best of 1 and 8 threads, and group commit)", best,
                          "commands/s", "library app.save, 1 thread", rates["raw_1"],
                          f"group commit {rates['grouped']:.0f}/s at {GROUP_THREADS} threads (docs/performance.md)",
                          ">= 3x baseline", best >= 3 * rates["raw_1"]))
    figures.append(Figure("PostgreSQL, library app.save of 10 aggregates per save", rates["raw_10_per_save"],
                          "events/s", "library app.save, 1 thread", rates["raw_1"],
                          "the ceiling group commit would approach"))
    return figures


def _count(quick: bool, scale: float) -> int:
    return max(THREADS, int((300 if quick else 2000) * scale))


