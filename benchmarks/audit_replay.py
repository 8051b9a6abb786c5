"""Audit replay of a 10,000-event aggregate, without and with a snapshot, and at an earlier version.

The aggregate is a real one of ours: a ``Consultation``, requested, confirmed, then 9,998
clinical notes (a confirmed consultation takes any number: it is the only aggregate of ours
that can legally reach 10,000 events). It lives in the consultations context's SQLite store,
written through the clinic's own application, so every note is sealed with the patient's key
and opened again on replay, as ``clinic audit`` does.

Our audit takes no snapshots (snapshotting is off in every application). The snapshot side
runs the same application with the library's snapshotting on (``IS_SNAPSHOTTING_ENABLED``),
``take_snapshot`` at the head, plus the one transcoding it needs for the notes; see
docs/performance.md for why that is not enabled in the clinic.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from eventsourcing.persistence import JSONTranscoder, Transcoder, Transcoding

from application.audit import Auditor
from application.consultations import ConsultationsApplication
from application.personal_data import mapper_factory, open_subject_keys
from application.settings import Settings
from domain.consultation import ClinicalNote, Consultation
from domain.metadata import event_metadata

from benchmarks.harness import Figure, benchmark

SAVE_EVERY = 1000  # events per save while recording


class ClinicalNoteAsDict(Transcoding):
    """A consultation's note inside a snapshot of its state (events never hold one)."""

    type = ClinicalNote
    name = "clinical_note"

    def encode(self, obj: ClinicalNote) -> dict[str, Any]:
        return {"author": obj.author, "text": obj.text, "written_at": obj.written_at}

    def decode(self, data: dict[str, Any]) -> ClinicalNote:
        return ClinicalNote(**data)


class SnapshottingConsultations(ConsultationsApplication):
    """The consultations application with the library's snapshotting on (benchmark only)."""

    def register_transcodings(self, transcoder: Transcoder) -> None:
        super().register_transcodings(transcoder)
        if not isinstance(transcoder, JSONTranscoder):
            raise TypeError("the clinic's mappers transcode with a JSONTranscoder")
        transcoder.register(ClinicalNoteAsDict())


def record(app: ConsultationsApplication, events: int) -> uuid.UUID:
    """A consultation with ``events`` events: requested, confirmed, then notes."""
    patient, doctor = uuid.uuid4(), uuid.uuid4()
    with event_metadata(correlation_id="bench-audit", causation_id="bench", actor=str(doctor)):
        consultation = Consultation(patient_id=patient, doctor_id=doctor,
                                    start=datetime(2027, 1, 4, 9, tzinfo=UTC), reason="check-up")
        consultation.confirm()
        for n in range(events - 2):
            consultation.add_note(f"doctor:{doctor}", f"note {n}: blood pressure 120/80, follow up in 3 months")
            if consultation.version % SAVE_EVERY == 0:
                app.save(consultation)
        app.save(consultation)
    return consultation.id


def milliseconds(action: Callable[[], Any], rounds: int) -> float:
    """The median wall time of ``action`` over ``rounds`` runs, in ms."""
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times)


@benchmark("audit_replay", summary="a 10k-event consultation rebuilt without and with a snapshot")
def audit_replay(quick: bool, scale: float = 1.0) -> list[Figure]:
    """repository.get and Auditor.trail of a 10k-event aggregate, without and with a snapshot."""
    events, rounds = max(10, int(10_000 * scale)), 3 if quick else 7
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(persistence="sqlite", data_dir=Path(tmp))
        mapper = mapper_factory(open_subject_keys(settings, create_table=True))
        env = settings.eventsourcing_env(ConsultationsApplication.name, True)
        plain = ConsultationsApplication(env=env, mapper_factory=mapper)
        snapshotting = SnapshottingConsultations(env=env | {"IS_SNAPSHOTTING_ENABLED": "y"}, mapper_factory=mapper)
        try:
            return measure(plain, snapshotting, events, rounds)
        finally:
            plain.close()
            snapshotting.close()


def measure(plain: ConsultationsApplication, snapshotting: SnapshottingConsultations, events: int,
            rounds: int) -> list[Figure]:
    consultation_id = record(plain, events)
    snapshotting.take_snapshot(consultation_id)
    if snapshotting.snapshots is None or not list(snapshotting.snapshots.get(consultation_id, desc=True, limit=1)):
        raise RuntimeError("take_snapshot stored no snapshot")
    half = events // 2
    apps = {"plain": plain, "snapshot": snapshotting}

    def timed(action: Callable[[ConsultationsApplication], object]) -> dict[str, float]:
        return {name: milliseconds(partial(action, app), rounds) for name, app in apps.items()}

    get = timed(lambda app: app.repository.get(consultation_id))
    trail = timed(lambda app: Auditor({"consultation": (app, Consultation)}).trail("consultation", consultation_id))
    earlier = timed(lambda app: app.repository.get(consultation_id, version=half))
    label = f"{events:,}-event consultation"
    return [
        Figure(f"repository.get of a {label}, snapshot at the head", get["snapshot"], "ms", "no snapshot (replay)",
               get["plain"], f"replay: {events / get['plain'] * 1000:,.0f} events/s", higher_is_better=False),
        Figure(f"Auditor.trail of a {label}, snapshot at the head", trail["snapshot"], "ms", "no snapshot",
               trail["plain"], "the trail reads and decodes every event to list them", higher_is_better=False),
        Figure(f"repository.get at version {half:,}, snapshot at the head", earlier["snapshot"], "ms",
               "no snapshot", earlier["plain"], "a later snapshot cannot serve an earlier version",
               higher_is_better=False),
    ]
