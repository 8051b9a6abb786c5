"""The runner over a real SQLite clinic: the views answer what the applications answer today."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

import pytest

from application.views import ConsultationView, Saga, SagaStep, SlotView
from projections.catalog import ALL_PROJECTIONS, BY_NAME
from projections.runner import ProjectionRunner
from tests.integration.projections.conftest import delete_prefix
from tests.projection_loop import LiveProjections
from tests.unit.projections.histories import dump_all

START = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)
DAY = "2027-01-05"

DETAIL_VERSION = BY_NAME["consultation_detail"].version


def consultation_view(f: dict[str, str]) -> ConsultationView:
    return ConsultationView(UUID(f["consultation_id"]), UUID(f["patient_id"]), UUID(f["doctor_id"]),
                            datetime.fromisoformat(f["start"]), f["status"], f["reason"],
                            f["rejection_reason"] or None, int(f["version"]))


def saga_view(f: dict[str, str], steps: list[str]) -> Saga:
    return Saga(UUID(f["saga_id"]), UUID(f["consultation_id"]), f["state"], f["rejection_reason"] or None,
                    datetime.fromisoformat(f["deadline"]),
                    [SagaStep(s["name"], s["status"], datetime.fromisoformat(s["at"]))
                     for s in map(json.loads, steps)])


def slot_view(f: dict[str, str]) -> SlotView:
    return SlotView(UUID(f["slot_id"]), UUID(f["doctor_id"]), datetime.fromisoformat(f["start"]),
                    int(f["duration_minutes"]), f["status"], UUID(f["booking_id"]) if f["booking_id"] else None)


@pytest.fixture
def clinic(make_clinic):
    """A SQLite clinic with confirmed, cancelled, noted and rejected bookings."""
    clinic = make_clinic("sqlite")
    ana = clinic.registry.register_patient("Ana", "ana@example.org", date(1990, 1, 1), True)
    bo = clinic.registry.register_patient("Bo", "bo@example.org", date(1991, 1, 1), False)
    rui = clinic.registry.register_doctor("Dr. Rui", "cardiology")
    clinic.open_slots(rui, [(START + timedelta(hours=h), 30) for h in (0, 1, 2, 24)])
    cancelled = clinic.book(ana, rui, START, "check-up").consultation_id
    noted = clinic.book(ana, rui, START + timedelta(hours=1), "follow-up").consultation_id
    clinic.book(bo, rui, START + timedelta(hours=2), "no consent")
    clinic.book(ana, rui, START + timedelta(hours=5), "no slot")
    clinic.book(ana, rui, START + timedelta(hours=24), "tomorrow")
    clinic.wait_until_settled()
    clinic.consultations.cancel(cancelled, "ill", by_patient=True)
    clinic.consultations.add_note(noted, "Dr. Rui", "all fine")
    clinic.wait_until_settled()
    clinic.people = (ana, bo, rui)
    return clinic


def apps_of(clinic) -> dict:
    return {app.name: app for app in clinic.apps()}


def test_views_answer_what_the_applications_answer(clinic, store):
    runner = ProjectionRunner(apps_of(clinic), store, ALL_PROJECTIONS)
    assert runner.catch_up() > 0
    assert all(s.lag == 0 for s in runner.status().values())
    ana, _bo, rui = clinic.people
    details = {k: v for k, v in store.dump("consultation_detail", DETAIL_VERSION).items() if k.startswith("consultation:")}
    assert len(details) == 5
    for fields in details.values():
        view = clinic.consultations.consultation(UUID(fields["consultation_id"]))
        assert consultation_view(fields) == view
    sagas = store.dump("saga_status", 1)
    assert len(sagas) == 2 * 5
    for key, fields in sagas.items():
        if not key.endswith(":steps"):
            assert saga_view(fields, sagas[key + ":steps"]) == clinic.saga(UUID(fields["saga_id"]))
    for fields in store.dump("doctor_slots", 1).values():
        if isinstance(fields, dict):
            assert slot_view(fields) == clinic.scheduling.slot(UUID(fields["slot_id"]))
    statuses = {c["reason"]: (c["status"], c["rejection_reason"]) for c in details.values()}
    assert statuses == {"check-up": ("CANCELLED", ""), "follow-up": ("CONFIRMED", ""),
                        "no consent": ("REJECTED", "patient_not_eligible"),
                        "no slot": ("REJECTED", "slot_unavailable"), "tomorrow": ("CONFIRMED", "")}
    newest_first = store.range_by_score("patient_consultations", 1, f"patient:{ana}:consultations", reverse=True)
    assert [details[f"consultation:{m}"]["reason"] for m, _ in newest_first] == [
        "tomorrow", "no slot", "follow-up", "check-up"]
    agenda = store.range_by_score("doctor_agenda", 1, f"doctor:{rui}:agenda:{DAY}")
    assert [details[f"consultation:{m}"]["reason"] for m, _ in agenda] == [
        "check-up", "follow-up", "no consent", "no slot"]
    slots = store.range_by_score("doctor_slots", 1, f"doctor:{rui}:slots:{DAY}")
    assert [store.get_fields("doctor_slots", 1, f"slot:{m}")["status"] for m, _ in slots] == ["OPEN", "BOOKED", "OPEN"]


def test_after_losing_every_key_a_rebuild_restores_the_same_views(clinic, store):
    ProjectionRunner(apps_of(clinic), store, ALL_PROJECTIONS, batch_size=2).catch_up()
    before = dump_all(store)
    assert delete_prefix(store, store.prefix) > 0  # what FLUSHDB does to this test's keys
    assert dump_all(store) == {p.name: {} for p in ALL_PROJECTIONS}
    ProjectionRunner(apps_of(clinic), store, ALL_PROJECTIONS).catch_up()
    assert dump_all(store) == before


def test_a_running_runner_shows_a_booking_well_within_a_second(clinic, store):
    runner = ProjectionRunner(apps_of(clinic), store, ALL_PROJECTIONS)
    runner.catch_up()
    loop = LiveProjections(runner, apps_of(clinic), poll_seconds=0.05).start()
    try:
        ana, _, rui = clinic.people
        consultation_id = clinic.book(ana, rui, START + timedelta(hours=24), "late").consultation_id
        booked = time.monotonic()
        while not store.get_fields("consultation_detail", DETAIL_VERSION, f"consultation:{consultation_id}"):
            assert time.monotonic() - booked < 1.0
            time.sleep(0.005)
        clinic.wait_until_settled()
        deadline = time.monotonic() + 1.0
        while store.get_fields("consultation_detail", DETAIL_VERSION, f"consultation:{consultation_id}")["status"] != "REJECTED":
            assert time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        loop.stop()
    assert runner.last_error is None
