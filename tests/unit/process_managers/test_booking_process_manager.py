"""The booking process manager, fed events by hand as a broker would deliver them.

No runner and no other context: each test delivers real domain events (built from
real aggregates) to ``process_event`` with a tracking position, and reads back the
saga events the process manager recorded in its own store.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import Tracking

from domain.consultation import Consultation
from domain.doctor import Doctor
from domain.metadata import event_metadata, event_reference
from domain.slot import Slot, SlotRequestRefused, slot_id_for
from domain.values import RejectionReason
from process_managers.booking import DEFAULT_SAGA_TIMEOUT, BookingProcessManager
from process_managers.booking_saga import BookingSaga, SagaState, saga_id_for
from process_managers.ports import Eligibility, RegistryUnavailableError
from tests.kit import FakeRegistry

START = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)
POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}


class Harness:
    """The process manager under test, and a broker that delivers events to it in order."""

    def __init__(self, registry: FakeRegistry, clock: Any, env: dict[str, str] | None = None) -> None:
        self.pm = BookingProcessManager(env=env or POPO)
        self.pm.registry = registry
        self.pm.clock = clock
        self.positions = {"Consultations": 0, "Scheduling": 0}

    def deliver(self, domain_event: Any) -> list[Any]:
        """Deliver at the leader's next position; returns the saga events it recorded."""
        leader = "Consultations" if isinstance(domain_event, Consultation.Event) else "Scheduling"
        self.positions[leader] += 1
        before = self.position()
        self.pm.process_event(domain_event, Tracking(leader, self.positions[leader]))
        return self.recorded_since(before)

    def time_out(self) -> tuple[list[UUID], list[Any]]:
        before = self.position()
        timed_out = self.pm.time_out_overdue_sagas()
        return timed_out, self.recorded_since(before)

    def position(self) -> int:
        return self.pm.recorder.max_notification_id() or 0

    def recorded_since(self, position: int) -> list[Any]:
        notifications = self.pm.recorder.select_notifications(
            start=position, limit=100, inclusive_of_start=False)
        return [self.pm.mapper.to_domain_event(n) for n in notifications]

    def saga(self, saga_id: UUID) -> BookingSaga:
        return self.pm.repository.get(saga_id)


class Booking:
    """One patient's booking as the other contexts see it: real aggregates, their events."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.patient_id, self.doctor_id = uuid4(), uuid4()
        self.consultation = Consultation(patient_id=self.patient_id, doctor_id=self.doctor_id,
                                         start=START, reason="check-up")
        self.saga_id = saga_id_for(self.consultation.id)
        self.slot = Slot(doctor_id=self.doctor_id, start=START, duration_minutes=30)
        self.slot_opened = self.slot.collect_events()[0]

    def requested(self) -> Consultation.Requested:
        return self.consultation.collect_events()[0]

    def slot_held(self) -> Slot.Held:
        deadline = self.clock() + DEFAULT_SAGA_TIMEOUT
        self.slot.hold(self.saga_id, expires_at=deadline, now=self.clock())
        return self.slot.collect_events()[-1]

    def slot_booked(self) -> Slot.Booked:
        self.slot.book(self.saga_id)
        return self.slot.collect_events()[-1]

    def refused(self, command: str = "hold") -> SlotRequestRefused.Recorded:
        refusal = SlotRequestRefused(booking_id=self.saga_id, slot_id=self.slot.id, command=command,
                                     reason="the slot is taken by another booking")
        return refusal.collect_events()[0]

    def cancelled(self, by_patient: bool = True) -> Consultation.Event:
        self.consultation.confirm()
        if by_patient:
            self.consultation.cancel_by_patient("feeling better")
        else:
            self.consultation.cancel_by_clinic("doctor ill")
        return self.consultation.collect_events()[-1]


def names(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def harness(registry, clock) -> Harness:
    return Harness(registry, clock)


@pytest.fixture
def booking(clock) -> Booking:
    return Booking(clock)


def given_requested(harness: Harness, booking: Booking) -> None:
    harness.deliver(booking.requested())


def given_completed(harness: Harness, booking: Booking) -> None:
    harness.deliver(booking.requested())
    harness.deliver(booking.slot_held())
    harness.deliver(booking.slot_booked())


# Happy path ----------------------------------------------------------------------


def test_a_request_starts_a_saga_that_asks_for_the_doctors_slot_until_a_deadline(harness, booking, clock):
    # Given a consultation just requested
    requested = booking.requested()
    # When the process manager receives the request
    recorded = harness.deliver(requested)
    # Then one saga starts, for that consultation's slot, with the deadline from the clock
    [started] = recorded
    assert isinstance(started, BookingSaga.Started)
    assert started.originator_id == booking.saga_id
    assert (started.consultation_id, started.patient_id, started.doctor_id) == (
        booking.consultation.id, booking.patient_id, booking.doctor_id)
    assert started.slot_id == slot_id_for(booking.doctor_id, START)
    assert started.deadline == clock() + DEFAULT_SAGA_TIMEOUT


def test_a_held_slot_is_validated_with_the_registry_and_then_booked(harness, booking, registry):
    # Given a started saga
    given_requested(harness, booking)
    # When its slot is held and the registry allows the booking
    recorded = harness.deliver(booking.slot_held())
    # Then the hold and the validation are recorded, asking scheduling to book the slot
    assert names(recorded) == ["SlotHeld", "RegistrantsValidated"]
    assert recorded[1].slot_id == booking.slot.id
    assert registry.asked == [(booking.patient_id, booking.doctor_id)]


def test_a_booked_slot_completes_the_saga(harness, booking):
    # Given a saga whose slot is held and registrants validated
    given_requested(harness, booking)
    harness.deliver(booking.slot_held())
    # When the slot is booked
    recorded = harness.deliver(booking.slot_booked())
    # Then the saga completes, asking consultations to confirm
    assert names(recorded) == ["Completed"]
    assert recorded[0].consultation_id == booking.consultation.id
    assert harness.saga(booking.saga_id).state == SagaState.COMPLETED


# Rejections ----------------------------------------------------------------------


def test_a_refused_hold_rejects_slot_unavailable_without_release(harness, booking):
    # Given a started saga
    given_requested(harness, booking)
    # When scheduling refuses to hold the slot
    recorded = harness.deliver(booking.refused("hold"))
    # Then the saga is rejected, with no slot to release
    [rejected] = recorded
    assert isinstance(rejected, BookingSaga.Rejected)
    assert (rejected.reason, rejected.release_slot) == ("slot_unavailable", False)
    assert rejected.consultation_id == booking.consultation.id


def test_a_refused_book_rejects_slot_unavailable_and_releases_the_hold(harness, booking):
    # Given a saga whose slot is held and registrants validated
    given_requested(harness, booking)
    harness.deliver(booking.slot_held())
    # When scheduling refuses to book the slot
    recorded = harness.deliver(booking.refused("book"))
    # Then the saga is rejected and its hold released
    [rejected] = recorded
    assert (rejected.reason, rejected.release_slot) == ("slot_unavailable", True)


@pytest.mark.parametrize("reason", [RejectionReason.DOCTOR_INACTIVE, RejectionReason.DOCTOR_NOT_FOUND,
                                    RejectionReason.PATIENT_NOT_ELIGIBLE])
def test_a_registry_refusal_rejects_with_its_reason_and_releases_the_held_slot(harness, booking, registry,
                                                                               reason):
    # Given a started saga and a registry that refuses the booking
    registry.answer = Eligibility.refused(reason)
    given_requested(harness, booking)
    # When the slot is held
    recorded = harness.deliver(booking.slot_held())
    # Then the hold is recorded, then the rejection for the registry's reason, releasing the slot
    assert names(recorded) == ["SlotHeld", "Rejected"]
    assert (recorded[1].reason, recorded[1].release_slot) == (str(reason), True)


def test_a_registry_refusal_without_a_reason_rejects_patient_not_eligible(harness, booking, registry):
    # Given a registry that refuses without saying why
    registry.answer = Eligibility(allowed=False)
    given_requested(harness, booking)
    # When the slot is held
    recorded = harness.deliver(booking.slot_held())
    # Then the rejection defaults to patient_not_eligible
    assert (recorded[-1].reason, recorded[-1].release_slot) == ("patient_not_eligible", True)


def test_an_unavailable_registry_defers_validation_instead_of_failing(harness, booking, registry, clock):
    # Given a registry that cannot answer
    registry.answer = RegistryUnavailableError("timed out")
    given_requested(harness, booking)
    # When the slot is held
    recorded = harness.deliver(booking.slot_held())
    # Then the failure is recorded (not raised) and validation is due again in a second
    assert names(recorded) == ["SlotHeld", "ValidationUnavailable"]
    assert (recorded[1].error, recorded[1].retry_at) == ("timed out", clock() + timedelta(seconds=1))
    assert harness.saga(booking.saga_id).state == SagaState.VALIDATING


def test_a_deferred_validation_is_not_retried_before_it_is_due(harness, booking, registry, clock):
    # Given a validation deferred by an unavailable registry
    registry.answer = RegistryUnavailableError("timed out")
    given_requested(harness, booking)
    harness.deliver(booking.slot_held())
    # When the timer ticks before the retry is due
    before = harness.position()
    # Then the registry is not asked again
    assert harness.pm.retry_deferred_validations() == []
    assert (len(registry.asked), harness.recorded_since(before)) == (1, [])


def test_a_deferred_validation_succeeds_once_the_registry_is_back(harness, booking, registry, clock):
    # Given a validation deferred by an unavailable registry
    registry.answer = RegistryUnavailableError("connection refused")
    given_requested(harness, booking)
    harness.deliver(booking.slot_held())
    # When the registry is back and the retry is due
    registry.answer = Eligibility.ok()
    clock.advance(seconds=1)
    before = harness.position()
    retried = harness.pm.retry_deferred_validations()
    # Then the saga goes on to book the slot
    assert retried == [booking.saga_id]
    assert names(harness.recorded_since(before)) == ["RegistrantsValidated"]


def test_retries_back_off_while_the_registry_stays_unavailable(harness, booking, registry, clock):
    # Given a validation deferred once
    registry.answer = RegistryUnavailableError("breaker open")
    given_requested(harness, booking)
    harness.deliver(booking.slot_held())
    # When the retry fails again
    clock.advance(seconds=1)
    before = harness.position()
    harness.pm.retry_deferred_validations()
    # Then the next attempt waits twice as long
    [deferred] = harness.recorded_since(before)
    assert deferred.retry_at == clock() + timedelta(seconds=2)


def test_validation_still_unavailable_at_the_deadline_is_compensated(harness, booking, registry, clock):
    # Given a registry that never answers
    registry.answer = RegistryUnavailableError("timed out")
    given_requested(harness, booking)
    harness.deliver(booking.slot_held())
    # When the deadline passes
    clock.advance(seconds=DEFAULT_SAGA_TIMEOUT.total_seconds())
    timed_out, recorded = harness.time_out()
    # Then the booking is rejected validation_unavailable and the held slot released
    [rejected] = recorded
    assert timed_out == [booking.saga_id]
    assert (rejected.reason, rejected.release_slot) == ("validation_unavailable", True)


# Deadlines -----------------------------------------------------------------------


def test_no_saga_is_timed_out_before_its_deadline(harness, booking, clock):
    # Given a started saga
    given_requested(harness, booking)
    # When the clock is just short of the deadline
    clock.advance(seconds=DEFAULT_SAGA_TIMEOUT.total_seconds() - 1)
    # Then nothing is timed out
    assert harness.time_out() == ([], [])


def test_a_saga_open_at_its_deadline_is_rejected_deadline_exceeded(harness, booking, clock):
    # Given a started saga whose slot was never held
    given_requested(harness, booking)
    # When its deadline passes
    clock.advance(seconds=DEFAULT_SAGA_TIMEOUT.total_seconds())
    timed_out, recorded = harness.time_out()
    # Then it is rejected for the deadline, with no slot to release
    assert timed_out == [booking.saga_id]
    [rejected] = recorded
    assert (rejected.reason, rejected.release_slot) == ("deadline_exceeded", False)


def test_a_saga_timed_out_once_is_not_timed_out_again(harness, booking, clock):
    # Given a saga already timed out
    given_requested(harness, booking)
    clock.advance(seconds=60)
    harness.time_out()
    # When deadlines are checked again later
    clock.advance(seconds=60)
    # Then nothing more happens
    assert harness.time_out() == ([], [])


def test_a_completed_saga_is_never_timed_out(harness, booking, clock):
    # Given a completed saga
    given_completed(harness, booking)
    # When its deadline passes
    clock.advance(hours=1)
    # Then it is not timed out
    assert harness.time_out() == ([], [])


def test_a_saga_timed_out_after_a_refusal_is_not_rejected_twice(harness, booking, clock):
    # Given a saga rejected by a refused hold
    given_requested(harness, booking)
    harness.deliver(booking.refused())
    # When its deadline passes
    clock.advance(hours=1)
    # Then no second rejection is recorded
    assert harness.time_out() == ([], [])


def test_deadlines_survive_a_restart_of_the_process_manager(registry, booking, clock, tmp_path):
    # Given a saga started by a process manager on a SQLite store, which then stops
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "booking.sqlite")}
    first = Harness(registry, clock, env)
    first.deliver(booking.requested())
    first.pm.close()
    # When a new process manager on the same store checks deadlines after the deadline
    restarted = Harness(registry, clock, env)
    clock.advance(seconds=DEFAULT_SAGA_TIMEOUT.total_seconds() + 1)
    timed_out, recorded = restarted.time_out()
    # Then it finds the saga from the store and rejects it
    assert timed_out == [booking.saga_id]
    assert (names(recorded), recorded[0].reason) == (["Rejected"], "deadline_exceeded")
    assert restarted.saga(booking.saga_id).state == SagaState.REJECTED


def test_a_hold_arriving_after_the_timeout_is_given_back(harness, booking, registry, clock):
    # Given a saga timed out before its slot was held
    given_requested(harness, booking)
    clock.advance(seconds=DEFAULT_SAGA_TIMEOUT.total_seconds())
    harness.time_out()
    # When the hold arrives late
    recorded = harness.deliver(booking.slot_held())
    # Then the slot is given back, without asking the registry
    [release] = recorded
    assert isinstance(release, BookingSaga.SlotReleaseRequested)
    assert (release.slot_id, release.reason) == (booking.slot.id, "hold_after_rejection")
    assert registry.asked == []


def test_a_saga_timed_out_while_booking_releases_its_held_slot(harness, booking, clock):
    # Given a saga whose slot is held but not yet booked
    given_requested(harness, booking)
    harness.deliver(booking.slot_held())
    # When its deadline passes
    clock.advance(seconds=DEFAULT_SAGA_TIMEOUT.total_seconds())
    timed_out, recorded = harness.time_out()
    # Then it is rejected and asks for the hold to be released
    assert timed_out == [booking.saga_id]
    assert (recorded[0].reason, recorded[0].release_slot) == ("deadline_exceeded", True)


# Cancellation --------------------------------------------------------------------


@pytest.mark.parametrize("by_patient", [True, False], ids=["by_patient", "by_clinic"])
def test_cancelling_a_confirmed_consultation_asks_to_release_its_slot(harness, booking, by_patient):
    # Given a completed saga
    given_completed(harness, booking)
    # When its consultation is cancelled
    recorded = harness.deliver(booking.cancelled(by_patient))
    # Then the saga asks for its slot back and is cancelled
    [release] = recorded
    assert isinstance(release, BookingSaga.SlotReleaseRequested)
    assert (release.slot_id, release.reason) == (booking.slot.id, "consultation_cancelled")
    assert harness.saga(booking.saga_id).state == SagaState.CANCELLED


# Redelivery and unrelated events ---------------------------------------------------


def deliveries(booking: Booking, registry: FakeRegistry, scenario: str) -> list[Any]:
    """The events of one saga path, in the order the broker delivers them."""
    if scenario == "refused":
        return [booking.requested(), booking.refused()]
    if scenario == "doctor_inactive":
        registry.answer = Eligibility.refused(RejectionReason.DOCTOR_INACTIVE)
        return [booking.requested(), booking.slot_held()]
    happy = [booking.requested(), booking.slot_held(), booking.slot_booked()]
    return happy + ([booking.cancelled()] if scenario == "cancelled" else [])


@pytest.mark.parametrize("scenario", ["happy", "refused", "doctor_inactive", "cancelled"])
def test_an_event_delivered_again_changes_nothing(harness, booking, registry, scenario):
    # Given every event of a saga path, each delivered once
    events = deliveries(booking, registry, scenario)
    for event in events:
        harness.deliver(event)
    version = harness.saga(booking.saga_id).version
    # When each is delivered again, at a new position (a broker redelivery)
    again = [harness.deliver(event) for event in events]
    # Then nothing more is recorded and the saga is unchanged
    assert again == [[] for _ in events]
    assert harness.saga(booking.saga_id).version == version


def test_an_event_the_saga_ignores_records_only_its_tracking(harness, booking):
    # Given a started saga
    given_requested(harness, booking)
    # When events it does not react to arrive
    doctor_registered = Doctor(name="Dr. Rui", specialty="cardiology").collect_events()[0]
    recorded = [harness.deliver(booking.slot_opened), harness.deliver(doctor_registered)]
    # Then nothing is recorded but the positions are tracked
    assert recorded == [[], []]
    assert harness.pm.recorder.max_tracking_id("Scheduling") == 2


def test_events_for_a_booking_without_a_saga_record_only_their_tracking(harness, booking):
    # Given no saga for this booking
    # When scheduling reports a hold, a booking and a refusal for it, and a cancellation arrives
    recorded = [harness.deliver(booking.slot_held()), harness.deliver(booking.slot_booked()),
                harness.deliver(booking.refused()), harness.deliver(booking.cancelled())]
    # Then nothing is recorded, and every position is tracked
    assert recorded == [[], [], [], []]
    assert harness.pm.recorder.max_tracking_id("Scheduling") == 3
    assert harness.pm.recorder.max_tracking_id("Consultations") == 1


def test_saga_events_carry_the_correlation_and_cause_of_the_event_they_react_to(harness, clock):
    # Given a request made under a correlation id
    with event_metadata(correlation_id="corr-42"):
        booking = Booking(clock)
    requested = booking.requested()
    # When it is delivered
    [started] = harness.deliver(requested)
    # Then the saga's event carries that correlation, names its cause, its saga and its actor
    assert started.correlation_id == "corr-42"
    assert started.causation_id == event_reference(requested)
    assert started.saga_id == str(booking.saga_id)
    assert started.actor == "service:booking"


def test_a_custom_timeout_sets_the_deadline(harness, booking, clock):
    # Given a process manager with a short timeout
    harness.pm.saga_timeout = timedelta(seconds=5)
    # When a request is delivered
    [started] = harness.deliver(booking.requested())
    # Then the deadline follows the setting
    assert started.deadline == clock() + timedelta(seconds=5)


def test_a_timed_out_saga_keeps_the_bookings_correlation(harness, clock):
    # Given a saga started from a request made under a correlation id
    with event_metadata(correlation_id="corr-late"):
        booking = Booking(clock)
    harness.deliver(booking.requested())
    # When it is timed out
    clock.advance(seconds=DEFAULT_SAGA_TIMEOUT.total_seconds())
    _, [rejected] = harness.time_out()
    # Then its rejection still belongs to the booking's correlation
    assert rejected.saga_id == str(booking.saga_id)
    assert rejected.correlation_id == "corr-late"
