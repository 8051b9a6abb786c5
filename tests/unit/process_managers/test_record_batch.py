"""A follower's batch: every job's policy, then one transaction; the aggregates a batch changed are
seen by its later jobs only (never by other threads before it commits)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from eventsourcing.persistence import Tracking
from eventsourcing.utils import resolve_topic

from application.bootstrap import build_applications
from application.settings import BATCH_RECORDERS, Settings
from domain.slot import Slot, SlotRequestRefused
from process_managers.base import Job
from process_managers.booking_saga import BookingSaga

START = datetime(2027, 1, 4, 9, tzinfo=UTC)


@pytest.fixture
def scheduling():
    apps = build_applications(Settings(persistence="memory"))
    yield apps["Scheduling"]
    for app in apps.values():
        app.close()


def started(doctor_id: uuid.UUID, notification_id: int) -> Job:
    """The booking saga's command to hold the slot of ``doctor_id`` at START (a new saga each time)."""
    saga = BookingSaga(consultation_id=uuid.uuid4(), patient_id=uuid.uuid4(), doctor_id=doctor_id,
                       slot_id=Slot.create_id(doctor_id, START, 30), deadline=START + timedelta(minutes=1))
    return Job(saga.collect_events()[0], Tracking("Booking", notification_id))


def test_two_holds_of_one_slot_in_one_batch_are_one_transaction_where_the_second_sees_the_first(scheduling):
    doctor_id = uuid.uuid4()
    [slot_id] = scheduling.open_slots(doctor_id, [(START, 30)])
    head = scheduling.recorder.max_notification_id()
    # when one batch carries two sagas' commands to hold the same slot
    recordings = scheduling.record_batch([started(doctor_id, 1), started(doctor_id, 2)], exact=False)
    # then the first holds it, the second is refused, and both are recorded together, tracked once
    assert [type(r.domain_event) for r in recordings] == [Slot.Held, SlotRequestRefused.Recorded]
    assert [r.notification.id for r in recordings] == [head + 1, head + 2]
    assert scheduling.repository.get(slot_id).version == 2
    assert scheduling.recorder.max_tracking_id("Booking") == 2


def test_an_aggregate_changed_by_a_batch_is_not_seen_by_other_threads_before_it_commits(scheduling):
    doctor_id = uuid.uuid4()
    [slot_id] = scheduling.open_slots(doctor_id, [(START, 30)])
    seen_by_other_thread = []

    class Peek:
        """A job's ``around``: after the first job held the slot, another thread reads it."""

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            reader = threading.Thread(target=lambda: seen_by_other_thread.append(
                str(scheduling.repository.get(slot_id).status)))
            reader.start()
            reader.join()

    first = started(doctor_id, 1)
    scheduling.record_batch([Job(first.event, first.tracking, around=Peek), started(doctor_id, 2)], exact=False)
    assert seen_by_other_thread == ["OPEN"]
    assert str(scheduling.repository.get(slot_id).status) == "HELD"


def test_a_batch_with_a_failing_job_records_nothing(scheduling):
    doctor_id = uuid.uuid4()
    scheduling.open_slots(doctor_id, [(START, 30)])
    head = scheduling.recorder.max_notification_id()

    class Boom:
        """A job whose processing raises (as a policy's bug would)."""

        def __enter__(self):
            raise ZeroDivisionError

        def __exit__(self, *exc):
            return False

    second = started(doctor_id, 2)
    with pytest.raises(ZeroDivisionError):
        scheduling.record_batch([started(doctor_id, 1), Job(second.event, second.tracking, around=Boom)], exact=False)
    assert scheduling.recorder.max_notification_id() == head
    assert scheduling.recorder.max_tracking_id("Booking") is None


def test_a_tracking_row_per_job_needs_a_store_that_can_record_them(scheduling):
    with pytest.raises(TypeError, match="cannot record a tracking row per job"):
        scheduling.record_batch([started(uuid.uuid4(), 1)], exact=True)


@pytest.mark.parametrize("store", sorted(BATCH_RECORDERS))
def test_the_settings_name_batch_recorders_of_the_library_s_process_recorders(store):
    recorder = resolve_topic(BATCH_RECORDERS[store])
    assert recorder.__name__.endswith("BatchRecorder") and hasattr(recorder, "processed")
    assert Settings(persistence=store).eventsourcing_env("Booking")["PROCESS_RECORDER_TOPIC"] == BATCH_RECORDERS[store]


def test_a_batch_loads_every_aggregate_its_events_touch_with_one_query(tmp_path):
    apps = build_applications(Settings(persistence="sqlite", data_dir=tmp_path))
    scheduling = apps["Scheduling"]
    try:
        doctors = [uuid.uuid4() for _ in range(5)]
        for doctor_id in doctors:
            scheduling.open_slots(doctor_id, [(START, 30)])
        one_by_one, at_once = [], []
        scheduling.recorder.select_events = lambda *a, **k: one_by_one.append(a) or []
        original = scheduling.recorder.select_events_of
        scheduling.recorder.select_events_of = lambda ids: at_once.append(list(ids)) or original(ids)
        # when five sagas' holds of five slots (and one of a slot nobody opened) come in one batch
        jobs = [started(doctor_id, n) for n, doctor_id in enumerate([*doctors, uuid.uuid4()], start=1)]
        recordings = scheduling.record_batch(jobs, exact=True)
        # then the six slots were read with one query, none alone, and each job saw its own
        assert len(at_once) == 1 and len(at_once[0]) == 6 and one_by_one == []
        assert [type(r.domain_event) for r in recordings] == [Slot.Held] * 5 + [SlotRequestRefused.Recorded]
    finally:
        for app in apps.values():
            app.close()
