"""What an operator may do to a saga: ask the registry again now, or compensate now; each is recorded in the
saga's stream with the operator as its actor, and refused where it does not apply."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.base import NotFoundError
from process_managers.booking import SagaStateError
from process_managers.ports import RegistryUnavailableError
from tests.conftest import ManualClock
from tests.unit.process_managers.test_booking_process_manager import Booking, FakeRegistry, Harness

OPERATOR = "operator:ops-1"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def waiting_on_the_registry(clock: ManualClock) -> tuple[Harness, Booking]:
    harness = Harness(FakeRegistry(RegistryUnavailableError("registry down")), clock)
    booking = Booking(clock)
    harness.deliver(booking.requested())
    harness.deliver(booking.slot_held())
    return harness, booking


def test_retrying_now_asks_the_registry_before_the_retry_is_due(clock):
    harness, booking = waiting_on_the_registry(clock)
    harness.pm.registry = FakeRegistry()  # the registry is back
    before = harness.position()
    harness.pm.retry_validation_now(booking.saga_id, OPERATOR)
    [validated] = harness.recorded_since(before)
    assert type(validated).__name__ == "RegistrantsValidated" and validated.actor == OPERATOR
    assert validated.causation_id == f"operator-retry:{booking.saga_id}"
    with pytest.raises(SagaStateError, match="not waiting on the registry"):
        harness.pm.retry_validation_now(booking.saga_id, OPERATOR)


def test_compensating_now_releases_the_slot_and_rejects_with_the_operator_as_actor(clock):
    harness, booking = waiting_on_the_registry(clock)
    before = harness.position()
    harness.pm.compensate_now(booking.saga_id, OPERATOR)
    [rejected] = harness.recorded_since(before)
    assert (rejected.reason, rejected.release_slot, rejected.actor) == ("compensated_by_operator", True, OPERATOR)
    assert harness.pm.next_due() is None  # the timer no longer watches it
    with pytest.raises(SagaStateError, match="has ended"):
        harness.pm.compensate_now(booking.saga_id, OPERATOR)


def test_an_ended_saga_or_an_unknown_one_is_refused(clock):
    harness = Harness(FakeRegistry(), clock)
    booking = Booking(clock)
    for event in (booking.requested(), booking.slot_held(), booking.slot_booked()):
        harness.deliver(event)
    for act in (harness.pm.compensate_now, harness.pm.retry_validation_now):
        with pytest.raises(SagaStateError):
            act(booking.saga_id, OPERATOR)
        with pytest.raises(NotFoundError):
            act(uuid4(), OPERATOR)
