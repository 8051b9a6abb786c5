"""The projection runner over the clinic's in-memory applications and the memory store."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from domain.consultation import Consultation
from domain.slot import SlotRequestRefused
from process_managers.booking_saga import BookingSaga
from projections.catalog import ALL_PROJECTIONS
from projections.consultation_detail import ConsultationDetail
from projections.doctor_slots import DoctorSlots
from projections.memory_store import MemoryViewStore
from projections.runner import ProjectionRunner
from tests.unit.projections.events import DOCTOR, PATIENT, START
from tests.unit.projections.histories import dump_all, memory_apps
from tests.unit.projections.incremental import RecordingStore


@pytest.fixture
def apps():
    return memory_apps()


def request(apps, n: int = 1) -> list[Consultation]:
    consultations = [Consultation(patient_id=PATIENT, doctor_id=DOCTOR, start=START + timedelta(hours=i),
                                  reason="check-up") for i in range(n)]
    apps["Consultations"].save(*consultations)
    return consultations


def test_catch_up_brings_every_projection_to_its_leaders_heads(apps):
    request(apps, 5)
    runner = ProjectionRunner(apps, MemoryViewStore(), ALL_PROJECTIONS)
    assert runner.status()["consultation_detail"].lag == 5
    assert runner.catch_up() == 5
    status = runner.status()
    assert {name: s.lag for name, s in status.items()} == dict.fromkeys(status, 0)
    assert status["consultation_detail"].leaders["Consultations"].position == 5
    assert runner.catch_up() == 0


def test_reads_in_batches_and_applies_each_with_its_position(apps):
    request(apps, 7)
    store = RecordingStore(MemoryViewStore())
    ProjectionRunner(apps, store, [ConsultationDetail()], batch_size=3).catch_up()
    assert [args[3] for args in store.applied] == [3, 6, 7]
    assert [args[5] for args in store.applied] == [0, 3, 6]  # each batch says which position it was read after


def test_max_batches_bounds_a_catch_up(apps):
    request(apps, 7)
    runner = ProjectionRunner(apps, MemoryViewStore(), [ConsultationDetail()], batch_size=2)
    assert runner.catch_up(max_batches=2) == 4
    assert runner.status()["consultation_detail"].lag == 3


def test_events_a_projection_ignores_still_move_its_position(apps):
    refusal = SlotRequestRefused(booking_id=UUID(int=1), slot_id=UUID(int=2), command="hold", reason="closed")
    apps["Scheduling"].save(refusal)
    store = MemoryViewStore()
    ProjectionRunner(apps, store, [DoctorSlots()]).catch_up()
    assert store.position("doctor_slots", 1, "Scheduling") == 1
    assert store.dump("doctor_slots", 1) == {}


def test_a_projection_behind_the_others_of_its_leader_catches_up_alone(apps):
    request(apps, 4)
    store = MemoryViewStore()
    ProjectionRunner(apps, store, [ConsultationDetail()]).catch_up()
    request(apps, 2)
    ProjectionRunner(apps, store, ALL_PROJECTIONS, batch_size=4).catch_up()
    rebuilt = MemoryViewStore()
    ProjectionRunner(apps, rebuilt, ALL_PROJECTIONS).catch_up()
    assert dump_all(store) == dump_all(rebuilt)


def test_a_second_runner_that_moved_first_makes_the_stale_batch_be_refused_and_reread(apps):
    saga = BookingSaga(consultation_id=UUID(int=9), patient_id=PATIENT, doctor_id=DOCTOR, slot_id=UUID(int=8),
                       deadline=START)
    apps["Booking"].save(saga)
    saga.record_slot_held()
    apps["Booking"].save(saga)  # its steps are appended: applying an event twice would show
    store = MemoryViewStore()
    rival = ProjectionRunner(apps, store, ALL_PROJECTIONS, batch_size=1)

    class RivalFirst(RecordingStore):
        def apply(self, *args):
            if not self.applied:  # the rival applies a batch between this runner's read and its write
                rival.step()
            return super().apply(*args)

    ProjectionRunner(apps, RivalFirst(store), ALL_PROJECTIONS).catch_up()
    rebuilt = MemoryViewStore()
    ProjectionRunner(apps, rebuilt, ALL_PROJECTIONS).catch_up()
    assert dump_all(store) == dump_all(rebuilt)
    assert len(store.list_items("saga_status", 1, f"saga:{saga.id}:steps")) == 3


def test_a_projection_reading_an_application_not_given_is_refused(apps):
    with pytest.raises(ValueError, match="consultation_detail reads Registry, which is not given"):
        ProjectionRunner({"Consultations": apps["Consultations"]}, MemoryViewStore(), ALL_PROJECTIONS)


