"""The BookingSaga state machine on its own: each command's events, given a history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from domain.metadata import event_metadata
from domain.values import RejectionReason
from process_managers.booking_saga import BookingSaga, SagaState, saga_id_for
from tests.kit import given, that
from tests.kit.gwt import Given

DEADLINE = datetime(2027, 1, 4, 8, 0, 30, tzinfo=UTC)
BEFORE_DEADLINE = DEADLINE - timedelta(seconds=1)
AFTER_DEADLINE = DEADLINE + timedelta(seconds=1)


# Given ---------------------------------------------------------------------------

CONSULTATION, PATIENT, DOCTOR, SLOT = uuid4(), uuid4(), uuid4(), uuid4()
STARTED = that(BookingSaga.Started, originator_id=saga_id_for(CONSULTATION), consultation_id=CONSULTATION,
               patient_id=PATIENT, doctor_id=DOCTOR, slot_id=SLOT, deadline=DEADLINE)
HISTORIES = {
    "started": (STARTED,),
    "validating": (STARTED, BookingSaga.SlotHeld),
    "booking_slot": (STARTED, BookingSaga.SlotHeld, that(BookingSaga.RegistrantsValidated, slot_id=SLOT)),
    "completed": (STARTED, BookingSaga.SlotHeld, that(BookingSaga.RegistrantsValidated, slot_id=SLOT),
                  that(BookingSaga.Completed, consultation_id=CONSULTATION)),
}


def a_saga(history: str) -> Given:
    """Given: the booking saga with this history."""
    return given(*HISTORIES[history])


def started() -> BookingSaga:
    """A saga that has just asked for its slot to be held."""
    return a_saga("started").aggregate()


def validating() -> BookingSaga:
    return a_saga("validating").aggregate()


def booking_slot() -> BookingSaga:
    return a_saga("booking_slot").aggregate()


def completed() -> BookingSaga:
    return a_saga("completed").aggregate()


def rejected_while_holding() -> BookingSaga:
    saga = started()
    saga.reject(RejectionReason.SLOT_UNAVAILABLE)
    saga.collect_events()
    return saga


def rejected_while_validating() -> BookingSaga:
    saga = validating()
    saga.reject(RejectionReason.DOCTOR_INACTIVE)
    saga.collect_events()
    return saga


def cancelled() -> BookingSaga:
    saga = completed()
    saga.release_after_cancellation("consultation_cancelled")
    saga.collect_events()
    return saga


OPEN = {"HOLDING_SLOT": started, "VALIDATING": validating, "BOOKING_SLOT": booking_slot}
CLOSED = {"COMPLETED": completed, "REJECTED": rejected_while_holding, "CANCELLED": cancelled}
EVERY_STATE = OPEN | CLOSED


def names(events: list) -> list[str]:
    return [type(e).__name__ for e in events]


def steps(saga: BookingSaga) -> list[tuple[str, str]]:
    return [(s.name, s.status) for s in saga.steps]


# Transitions ---------------------------------------------------------------------


def test_starting_a_saga_records_started_with_the_booking_and_asks_to_hold_the_slot():
    # Given a consultation to book
    consultation_id, patient_id, doctor_id, slot_id = uuid4(), uuid4(), uuid4(), uuid4()
    # When its saga starts
    saga = BookingSaga(consultation_id=consultation_id, patient_id=patient_id, doctor_id=doctor_id,
                       slot_id=slot_id, deadline=DEADLINE)
    # Then one Started event carries the booking, under the id derived from the consultation
    [event] = saga.collect_events()
    assert isinstance(event, BookingSaga.Started)
    assert (event.consultation_id, event.patient_id, event.doctor_id, event.slot_id, event.deadline) == (
        consultation_id, patient_id, doctor_id, slot_id, DEADLINE)
    assert saga.id == saga_id_for(consultation_id)
    assert (saga.state, saga.rejection_reason, saga.release_requested) == (SagaState.HOLDING_SLOT, None, False)
    assert steps(saga) == [("hold_slot", "requested")]


def test_slot_held_moves_holding_to_validating():
    saga = a_saga("started").when(BookingSaga.record_slot_held).then(BookingSaga.SlotHeld)
    assert saga.state == SagaState.VALIDATING
    assert steps(saga)[1:] == [("hold_slot", "succeeded"), ("validate_registrants", "requested")]


def test_registrants_valid_moves_validating_to_booking_slot_and_names_the_slot():
    saga = a_saga("validating").when(BookingSaga.record_registrants_valid).then(
        that(BookingSaga.RegistrantsValidated, slot_id=SLOT))
    assert saga.state == SagaState.BOOKING_SLOT
    assert steps(saga)[3:] == [("validate_registrants", "succeeded"), ("book_slot", "requested")]


def test_slot_booked_completes_the_saga_and_asks_to_confirm_the_consultation():
    saga = a_saga("booking_slot").when(BookingSaga.record_slot_booked).then(
        that(BookingSaga.Completed, consultation_id=CONSULTATION))
    assert saga.state == SagaState.COMPLETED
    assert not saga.is_open
    assert steps(saga)[5:] == [("book_slot", "succeeded"), ("confirm_consultation", "requested")]


def test_full_happy_path_steps_read_in_order():
    # Given / When a saga goes through every step
    saga = completed()
    # Then its steps tell the story in order
    assert steps(saga) == [
        ("hold_slot", "requested"), ("hold_slot", "succeeded"),
        ("validate_registrants", "requested"), ("validate_registrants", "succeeded"),
        ("book_slot", "requested"), ("book_slot", "succeeded"),
        ("confirm_consultation", "requested"),
    ]


def test_commands_out_of_order_record_nothing():
    # validation or booking results arriving before the hold: the saga still waits for the hold
    saga = a_saga("started").when(lambda saga: (saga.record_registrants_valid(), saga.record_slot_booked())).then()
    assert saga.state == SagaState.HOLDING_SLOT


# Rejection -----------------------------------------------------------------------


@pytest.mark.parametrize(("history", "release"), [("started", False), ("validating", True), ("booking_slot", True)],
                         ids=["HOLDING_SLOT", "VALIDATING", "BOOKING_SLOT"])
def test_reject_from_an_open_state_releases_the_slot_only_once_it_was_held(history, release):
    # Given an open saga, when it is rejected, then Rejected names consultation, slot, reason, and releases
    # only a held slot
    saga = a_saga(history).when(lambda saga: saga.reject(RejectionReason.PATIENT_NOT_ELIGIBLE)).then(
        that(BookingSaga.Rejected, consultation_id=CONSULTATION, slot_id=SLOT, reason="patient_not_eligible",
             release_slot=release))
    assert (saga.state, saga.rejection_reason, saga.release_requested) == (
        SagaState.REJECTED, "patient_not_eligible", release)


@pytest.mark.parametrize(("given", "expected_tail"), [
    (started, [("hold_slot", "failed"), ("reject_consultation", "requested")]),
    (validating, [("validate_registrants", "failed"), ("release_slot", "requested"),
                  ("reject_consultation", "requested")]),
    (booking_slot, [("book_slot", "failed"), ("release_slot", "requested"),
                    ("reject_consultation", "requested")]),
], ids=["HOLDING_SLOT", "VALIDATING", "BOOKING_SLOT"])
def test_reject_marks_the_pending_step_failed_and_lists_the_compensations(given, expected_tail):
    # Given an open saga
    saga = given()
    before = len(saga.steps)
    # When it is rejected
    saga.reject(RejectionReason.SLOT_UNAVAILABLE)
    # Then the step it waited on failed, followed by the compensations requested
    assert steps(saga)[before:] == expected_tail


@pytest.mark.parametrize("given", CLOSED.values(), ids=CLOSED.keys())
def test_reject_of_a_closed_saga_records_nothing(given):
    # Given a closed saga
    saga = given()
    state = saga.state
    # When it is rejected
    saga.reject(RejectionReason.SLOT_UNAVAILABLE)
    # Then nothing changes
    assert saga.collect_events() == []
    assert saga.state == state


# Deadline ------------------------------------------------------------------------


@pytest.mark.parametrize("given", OPEN.values(), ids=OPEN.keys())
def test_time_out_before_the_deadline_records_nothing(given):
    # Given an open saga
    saga = given()
    # When it is timed out before its deadline
    saga.time_out(BEFORE_DEADLINE)
    # Then nothing changes
    assert saga.collect_events() == []
    assert saga.is_open


@pytest.mark.parametrize("now", [DEADLINE, AFTER_DEADLINE], ids=["at", "after"])
@pytest.mark.parametrize(("given", "release"), [(started, False), (validating, True), (booking_slot, True)],
                         ids=["HOLDING_SLOT", "VALIDATING", "BOOKING_SLOT"])
def test_time_out_at_or_after_the_deadline_rejects_with_deadline_exceeded(given, release, now):
    # Given an open saga
    saga = given()
    # When it is timed out at or after its deadline
    saga.time_out(now)
    # Then it is rejected for the deadline, releasing only a held slot
    [event] = saga.collect_events()
    assert isinstance(event, BookingSaga.Rejected)
    assert (event.reason, event.release_slot) == ("deadline_exceeded", release)
    assert saga.state == SagaState.REJECTED


@pytest.mark.parametrize("given", CLOSED.values(), ids=CLOSED.keys())
def test_time_out_of_a_closed_saga_records_nothing(given):
    # Given a closed saga
    saga = given()
    # When it is timed out long after its deadline
    saga.time_out(AFTER_DEADLINE + timedelta(days=1))
    # Then nothing changes
    assert saga.collect_events() == []


# Late hold -----------------------------------------------------------------------


def test_a_hold_after_rejection_asks_once_to_release_the_slot():
    # Given a saga rejected before its slot was held
    saga = rejected_while_holding()
    # When the hold arrives late
    saga.record_slot_held()
    # Then exactly one SlotReleaseRequested gives the slot back
    [event] = saga.collect_events()
    assert isinstance(event, BookingSaga.SlotReleaseRequested)
    assert (event.slot_id, event.reason) == (saga.slot_id, "hold_after_rejection")
    assert (saga.state, saga.release_requested) == (SagaState.REJECTED, True)
    assert steps(saga)[-1] == ("release_slot", "requested")


def test_a_second_late_hold_records_nothing():
    # Given a rejected saga that already asked to release its late hold
    saga = rejected_while_holding()
    saga.record_slot_held()
    saga.collect_events()
    # When the hold arrives again
    saga.record_slot_held()
    # Then nothing is recorded
    assert saga.collect_events() == []


def test_a_hold_after_a_rejection_that_released_the_slot_records_nothing():
    # Given a saga rejected after its hold, its release already requested
    saga = rejected_while_validating()
    # When the hold is reported again
    saga.record_slot_held()
    # Then no second release is asked for
    assert saga.collect_events() == []


@pytest.mark.parametrize("given", [booking_slot, completed, cancelled],
                         ids=["BOOKING_SLOT", "COMPLETED", "CANCELLED"])
def test_a_hold_reported_again_later_in_the_saga_records_nothing(given):
    # Given a saga past its hold
    saga = given()
    # When the hold is reported again
    saga.record_slot_held()
    # Then nothing is recorded
    assert saga.collect_events() == []


# Cancellation --------------------------------------------------------------------


def test_cancellation_of_a_completed_saga_asks_to_release_its_slot():
    # Given a completed saga
    saga = completed()
    # When its consultation is cancelled
    saga.release_after_cancellation("consultation_cancelled")
    # Then SlotReleaseRequested gives the slot back and the saga is cancelled
    [event] = saga.collect_events()
    assert isinstance(event, BookingSaga.SlotReleaseRequested)
    assert (event.slot_id, event.reason) == (saga.slot_id, "consultation_cancelled")
    assert (saga.state, saga.release_requested) == (SagaState.CANCELLED, True)
    assert steps(saga)[-1] == ("release_slot", "requested")


@pytest.mark.parametrize(("given", "step"), [(started, "hold_slot"), (validating, "validate_registrants"),
                                              (booking_slot, "book_slot")],
                         ids=["HOLDING_SLOT", "VALIDATING", "BOOKING_SLOT"])
def test_cancellation_of_an_open_saga_stops_it_and_releases_what_it_holds(given, step):
    # Given a saga that has not decided
    saga = given()
    # When its consultation is cancelled
    saga.release_after_cancellation("consultation_cancelled")
    # Then Cancelled names the step it abandons and asks scheduling to give back the slot
    [event] = saga.collect_events()
    assert isinstance(event, BookingSaga.Cancelled)
    assert (event.slot_id, event.consultation_id, event.cancelled_step) == (SLOT, CONSULTATION, step)
    assert (saga.state, saga.release_requested, saga.is_open) == (SagaState.CANCELLED, True, False)
    assert steps(saga)[-2:] == [(step, "cancelled"), ("release_slot", "requested")]


@pytest.mark.parametrize("late", [BookingSaga.record_slot_held, BookingSaga.record_registrants_valid,
                                  BookingSaga.record_slot_booked])
def test_a_saga_cancelled_while_open_ignores_the_replies_that_come_after(late):
    # Given a saga cancelled while holding its slot
    saga = started()
    saga.release_after_cancellation("consultation_cancelled")
    saga.collect_events()
    # When a reply to an earlier command arrives
    late(saga)
    # Then it records nothing: the release it asked for follows that command in its log
    assert saga.collect_events() == []
    assert saga.state == SagaState.CANCELLED


@pytest.mark.parametrize("given", [rejected_while_holding, rejected_while_validating, cancelled],
                         ids=["REJECTED_unheld", "REJECTED_held", "CANCELLED"])
def test_cancellation_after_a_rejection_or_a_cancellation_records_nothing(given):
    # Given a saga that rejected, or was already cancelled
    saga = given()
    state = saga.state
    # When a cancellation arrives
    saga.release_after_cancellation("consultation_cancelled")
    # Then nothing changes
    assert saga.collect_events() == []
    assert saga.state == state


# Idempotency ---------------------------------------------------------------------

COMMANDS: dict[str, tuple[Callable[[], BookingSaga], Callable[[BookingSaga], None]]] = {
    "record_slot_held": (started, lambda s: s.record_slot_held()),
    "record_slot_held_late": (rejected_while_holding, lambda s: s.record_slot_held()),
    "record_registrants_valid": (validating, lambda s: s.record_registrants_valid()),
    "record_slot_booked": (booking_slot, lambda s: s.record_slot_booked()),
    "reject": (validating, lambda s: s.reject(RejectionReason.DOCTOR_INACTIVE)),
    "time_out": (booking_slot, lambda s: s.time_out(AFTER_DEADLINE)),
    "release_after_cancellation": (completed, lambda s: s.release_after_cancellation("cancelled")),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_given_twice_records_its_events_once(command):
    # Given a saga in the state the command applies to
    given, apply = COMMANDS[command]
    saga = given()
    # When the command is given twice
    apply(saga)
    first = saga.collect_events()
    state, version, step_count = saga.state, saga.version, len(saga.steps)
    apply(saga)
    # Then the second time adds no event, no step and no change of state
    assert len(first) == 1
    assert saga.collect_events() == []
    assert (saga.state, saga.version, len(saga.steps)) == (state, version, step_count)


# Metadata ------------------------------------------------------------------------


def test_every_saga_event_carries_its_saga_id_whatever_the_context_says():
    # Given a context that names another saga and a correlation
    with event_metadata(correlation_id="corr-1", saga_id="some-other-saga"):
        # When a saga records every kind of event
        ok = BookingSaga(consultation_id=uuid4(), patient_id=uuid4(), doctor_id=uuid4(),
                         slot_id=uuid4(), deadline=DEADLINE)
        ok.record_slot_held()
        ok.record_registrants_valid()
        ok.record_slot_booked()
        ok.release_after_cancellation("cancelled")
        late = BookingSaga(consultation_id=uuid4(), patient_id=uuid4(), doctor_id=uuid4(),
                           slot_id=uuid4(), deadline=DEADLINE)
        late.time_out(DEADLINE)
        late.record_slot_held()
    # Then each event carries its own saga's id and keeps the context's correlation
    kinds = set()
    for saga in (ok, late):
        events = saga.collect_events()
        kinds |= set(names(events))
        assert {e.saga_id for e in events} == {str(saga.id)}
        assert {e.correlation_id for e in events} == {"corr-1"}
    assert kinds == {"Started", "SlotHeld", "RegistrantsValidated", "Completed", "Rejected",
                     "SlotReleaseRequested"}


@pytest.mark.parametrize("given", EVERY_STATE.values(), ids=EVERY_STATE.keys())
def test_is_open_only_while_holding_validating_or_booking(given):
    # Given a saga in some state / Then it is open exactly in the three open states
    saga = given()
    assert saga.is_open == (saga.state in ("HOLDING_SLOT", "VALIDATING", "BOOKING_SLOT"))
    assert saga.is_open == (given in OPEN.values())


# Validation deferred while the registry is unavailable -----------------------------


def test_validation_unavailable_keeps_validating_and_records_the_retry():
    # given
    saga = validating()
    retry_at = DEADLINE - timedelta(seconds=20)
    # when
    saga.record_validation_unavailable("connection refused", retry_at)
    # then
    [deferred] = saga.collect_events()
    assert (type(deferred).__name__, deferred.error, deferred.retry_at) == (
        "ValidationUnavailable", "connection refused", retry_at)
    assert (saga.state, saga.validation_attempts) == (SagaState.VALIDATING, 1)
    assert steps(saga)[-1] == ("validate_registrants", "unavailable")


def test_validation_unavailable_outside_validation_records_nothing():
    # given
    saga = booking_slot()
    # when
    saga.record_validation_unavailable("timed out", DEADLINE)
    # then
    assert saga.collect_events() == []


def test_time_out_after_unanswered_validation_rejects_validation_unavailable():
    # given
    saga = validating()
    saga.record_validation_unavailable("timed out", DEADLINE - timedelta(seconds=1))
    saga.collect_events()
    # when
    saga.time_out(DEADLINE)
    # then
    [rejected] = saga.collect_events()
    assert (rejected.reason, rejected.release_slot) == (RejectionReason.VALIDATION_UNAVAILABLE, True)
