"""saga_status: given a saga's event, then its state fields and exactly the steps its mutator appends."""

from __future__ import annotations

import json
from uuid import UUID

import pytest

from domain.values import RejectionReason
from process_managers.booking_saga import BookingSaga
from projections.ops import AppendToList, SetFields, SetFieldsIf
from projections.saga_status import SagaStatus
from projections.values import iso
from tests.unit.projections.events import DEADLINE, completed, last_event, started, validating

projection = SagaStatus()


def steps(event, *pairs: tuple[str, str]) -> list[AppendToList]:
    at = iso(event.timestamp)
    return [AppendToList(f"saga:{event.originator_id}:steps",
                         json.dumps({"name": n, "status": s, "at": at}, separators=(",", ":"))) for n, s in pairs]


def test_start_writes_the_saga_and_its_first_step():
    saga, event = started()
    assert projection.changes(event) == [
        SetFields(f"saga:{saga.id}", {"saga_id": str(saga.id), "consultation_id": str(UUID(int=9)),
                                      "state": "HOLDING_SLOT", "rejection_reason": "",
                                      "deadline": "2027-01-04T08:00:30+00:00"}),
        *steps(event, ("hold_slot", "requested")),
    ]
    assert json.loads(projection.changes(event)[1].value) == {
        "name": "hold_slot", "status": "requested", "at": iso(saga.steps[0].at)}


def test_a_held_slot_moves_to_validation():
    saga, _ = started()
    saga.record_slot_held()
    event = last_event(saga)
    assert projection.changes(event) == [
        SetFields(f"saga:{saga.id}", {"state": "VALIDATING"}),
        *steps(event, ("hold_slot", "succeeded"), ("validate_registrants", "requested"))]


def test_an_unavailable_registry_only_adds_a_step():
    saga = validating()
    saga.record_validation_unavailable("down", DEADLINE)
    event = last_event(saga)
    assert projection.changes(event) == steps(event, ("validate_registrants", "unavailable"))


def test_valid_registrants_move_to_booking():
    saga = validating()
    saga.record_registrants_valid()
    event = last_event(saga)
    assert projection.changes(event) == [
        SetFields(f"saga:{saga.id}", {"state": "BOOKING_SLOT"}),
        *steps(event, ("validate_registrants", "succeeded"), ("book_slot", "requested"))]


def test_a_booked_slot_completes_the_saga():
    saga = validating()
    saga.record_registrants_valid()
    saga.collect_events()
    saga.record_slot_booked()
    event = last_event(saga)
    assert projection.changes(event) == [
        SetFields(f"saga:{saga.id}", {"state": "COMPLETED"}),
        *steps(event, ("book_slot", "succeeded"), ("confirm_consultation", "requested"))]


def test_a_rejection_while_holding_names_the_failed_step_and_releases_nothing():
    saga, _ = started()
    saga.reject(RejectionReason.SLOT_UNAVAILABLE)
    event = last_event(saga)
    assert projection.changes(event) == [
        SetFields(f"saga:{saga.id}", {"state": "REJECTED", "rejection_reason": "slot_unavailable"}),
        *steps(event, ("hold_slot", "failed"), ("reject_consultation", "requested"))]


def test_a_rejection_while_validating_releases_the_slot():
    saga = validating()
    saga.reject(RejectionReason.PATIENT_NOT_ELIGIBLE)
    event = last_event(saga)
    assert projection.changes(event) == [
        SetFields(f"saga:{saga.id}", {"state": "REJECTED", "rejection_reason": "patient_not_eligible"}),
        *steps(event, ("validate_registrants", "failed"), ("release_slot", "requested"),
               ("reject_consultation", "requested"))]


@pytest.mark.parametrize(("reason", "release", "step"), [
    ("slot_unavailable", False, "hold_slot"),
    ("doctor_inactive", True, "validate_registrants"),
    ("slot_unavailable", True, "book_slot"),
])
def test_a_rejection_recorded_before_failed_step_existed_infers_it(reason, release, step):
    event = BookingSaga.Rejected(originator_id=UUID(int=5), originator_version=2, timestamp=DEADLINE,
                                 consultation_id=UUID(int=9), slot_id=UUID(int=8), reason=reason,
                                 release_slot=release)
    assert projection.changes(event)[1] == steps(event, (step, "failed"))[0]


def test_a_release_after_cancellation_cancels_a_completed_saga_only():
    saga = completed()
    saga.release_after_cancellation("consultation_cancelled")
    event = last_event(saga)
    assert projection.changes(event) == [
        SetFieldsIf(f"saga:{saga.id}", "state", "COMPLETED", {"state": "CANCELLED"}),
        *steps(event, ("release_slot", "requested"))]


def test_a_late_hold_after_rejection_asks_for_release():
    saga, _ = started()
    saga.reject(RejectionReason.DEADLINE_EXCEEDED)
    saga.collect_events()
    saga.record_slot_held()
    event = last_event(saga)
    ops = projection.changes(event)
    assert ops[1:] == steps(event, ("release_slot", "requested"))
    assert ops[0] == SetFieldsIf(f"saga:{saga.id}", "state", "COMPLETED", {"state": "CANCELLED"})  # REJECTED stays


def test_reads_booking_and_ignores_other_events():
    assert (projection.name, projection.leaders) == ("saga_status", ("Booking",))
    assert projection.changes(object()) == []
