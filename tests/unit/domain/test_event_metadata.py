"""Every event carries the metadata of the context it was triggered in, and a timestamp."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from domain.doctor import Doctor
from domain.metadata import caused_by, current_metadata, event_metadata
from domain.slot import Slot

FIELDS = ("correlation_id", "causation_id", "saga_id", "actor")


def stamp(event) -> tuple:
    return tuple(getattr(event, field) for field in FIELDS)


def new_slot() -> Slot:
    return Slot(doctor_id=uuid4(), start=datetime(2027, 1, 4, 9, tzinfo=UTC), duration_minutes=30)


def test_given_metadata_block_when_aggregate_created_and_changed_then_every_event_stamped():
    # given
    with event_metadata(correlation_id="c", causation_id="x", actor="admin"):
        # when
        slot = new_slot()
        slot.hold(uuid4(), datetime(2027, 1, 4, 8, 10, tzinfo=UTC), now=datetime(2027, 1, 4, 8, tzinfo=UTC))
    # then
    opened, held = slot.collect_events()
    assert stamp(opened) == stamp(held) == ("c", "x", None, "admin")


def test_given_no_metadata_block_when_events_triggered_then_fields_are_none():
    # given
    doctor = Doctor(name="House", specialty="diagnostics")
    # when
    doctor.deactivate()
    # then
    registered, deactivated = doctor.collect_events()
    assert stamp(registered) == stamp(deactivated) == (None, None, None, None)


def test_given_aggregate_created_in_block_when_changed_after_block_then_event_not_stamped():
    # given
    with event_metadata(correlation_id="c", actor="admin"):
        doctor = Doctor(name="House", specialty="diagnostics")
    doctor.collect_events()
    # when
    doctor.deactivate()
    # then
    [deactivated] = doctor.collect_events()
    assert stamp(deactivated) == (None, None, None, None)


def test_given_nested_blocks_when_events_triggered_then_inner_overrides_only_given_fields_and_restores():
    # given
    doctor = Doctor(name="House", specialty="diagnostics")
    doctor.collect_events()
    with event_metadata(correlation_id="c", causation_id="x", saga_id="s", actor="admin"):
        with event_metadata(actor="doctor", causation_id="y"):
            # when
            doctor.deactivate()
        doctor.reactivate()
    # then
    deactivated, reactivated = doctor.collect_events()
    assert stamp(deactivated) == ("c", "y", "s", "doctor")
    assert stamp(reactivated) == ("c", "x", "s", "admin")
    assert stamp(current_metadata()) == (None, None, None, None)


def test_given_event_when_reacting_caused_by_it_then_correlation_saga_copied_and_causation_names_event():
    # given
    with event_metadata(correlation_id="c", saga_id="s", causation_id="x", actor="patient"):
        slot = new_slot()
    [opened] = slot.collect_events()
    # when
    with caused_by(opened, actor="scheduling"):
        doctor = Doctor(name="House", specialty="diagnostics")
    # then
    [registered] = doctor.collect_events()
    assert stamp(registered) == ("c", f"{slot.id}@1", "s", "scheduling")


def test_given_any_event_when_triggered_then_timestamp_is_timezone_aware():
    # given
    slot = new_slot()
    # when
    slot.close()
    # then
    for event in slot.collect_events():
        assert event.timestamp.tzinfo is not None
        assert event.timestamp.utcoffset() is not None
