"""The test kit holds what docs/testing.md says: a fake registry, eventually, given/when/then, profiles."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from domain.consultation import Consultation, ConsultationStateError
from domain.slot import Slot, slot_id_for
from domain.values import RejectionReason
from process_managers.ports import Eligibility, RegistryUnavailableError
from tests.conftest import hypothesis_profile
from tests.kit import FakeRegistry, eventually, eventually_async, given, that

START = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
PATIENT, DOCTOR = uuid4(), uuid4()


# The fake registry ---------------------------------------------------------------------------


def test_the_fake_registry_allows_everyone_and_records_who_asked():
    registry = FakeRegistry()
    assert registry.booking_eligibility(PATIENT, DOCTOR) == Eligibility.ok()
    assert (registry.asked, registry.calls) == ([(PATIENT, DOCTOR)], 1)


def test_the_fake_registry_gives_a_canned_answer_or_raises_it():
    refused = Eligibility.refused(RejectionReason.DOCTOR_INACTIVE)
    assert FakeRegistry(refused).booking_eligibility(PATIENT, DOCTOR) == refused
    with pytest.raises(RegistryUnavailableError):
        FakeRegistry(RegistryUnavailableError("timed out")).booking_eligibility(PATIENT, DOCTOR)


def test_the_fake_registry_refuses_chosen_patients_and_delegates_the_rest():
    other = uuid4()
    registry = FakeRegistry(inner=FakeRegistry(Eligibility.refused(RejectionReason.DOCTOR_INACTIVE)),
                            refused={PATIENT: RejectionReason.DOCTOR_NOT_FOUND})
    assert registry.booking_eligibility(PATIENT, DOCTOR).reason == RejectionReason.DOCTOR_NOT_FOUND
    assert registry.booking_eligibility(other, DOCTOR).reason == RejectionReason.DOCTOR_INACTIVE
    assert FakeRegistry(refused={PATIENT}).booking_eligibility(PATIENT, DOCTOR).reason == \
        RejectionReason.PATIENT_NOT_ELIGIBLE


def test_the_fake_registry_fails_as_scripted_then_answers():
    registry = FakeRegistry().fail_next(2)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="scripted"):
            registry.booking_eligibility(PATIENT, DOCTOR)
    assert registry.booking_eligibility(PATIENT, DOCTOR).allowed
    registry.failing_patients = {PATIENT}
    with pytest.raises(RuntimeError):
        registry.booking_eligibility(PATIENT, DOCTOR)
    assert registry.calls == 4
    registry.reset()
    assert (registry.calls, registry.asked, registry.failing_patients) == (0, [], set())


def test_a_gated_fake_registry_answers_once_opened():
    registry = FakeRegistry(gated=True)
    answers: list[Eligibility] = []
    asking = threading.Thread(target=lambda: answers.append(registry.booking_eligibility(PATIENT, DOCTOR)))
    asking.start()
    eventually(lambda: not registry.gate.is_set() and asking.is_alive(), timeout=5, what="the call to wait")
    assert answers == []
    registry.open()
    asking.join(5)
    assert answers == [Eligibility.ok()]


# eventually ----------------------------------------------------------------------------------


def test_eventually_returns_the_first_truthy_value():
    values = iter([0, None, "", "done"])
    assert eventually(lambda: next(values), timeout=5, interval=0.001) == "done"


def test_eventually_fails_at_its_deadline_naming_what_it_waited_for():
    began = time.monotonic()
    with pytest.raises(AssertionError, match="timed out after 0.1s waiting for the moon"):
        eventually(lambda: False, timeout=0.1, what="the moon")
    assert time.monotonic() - began < 2


def test_eventually_async_awaits_async_conditions_without_blocking_the_loop():
    async def scenario() -> int:
        done = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, done.set)

        async def is_done() -> bool:
            return done.is_set()

        await eventually_async(is_done, timeout=5)
        return await eventually_async(lambda: 7, timeout=1)

    assert asyncio.run(scenario()) == 7


# given / when / then -------------------------------------------------------------------------


REQUESTED = that(Consultation.Requested, patient_id=PATIENT, doctor_id=DOCTOR, start=START, reason="cough")


def test_given_replays_the_history_through_the_mutators():
    consultation = given(REQUESTED, Consultation.Confirmed).aggregate()
    assert (consultation.status, consultation.version, consultation.patient_id) == ("CONFIRMED", 2, PATIENT)


def test_given_uses_the_aggregates_own_id():
    slot = given(that(Slot.Opened, doctor_id=DOCTOR, start=START, duration_minutes=30)).aggregate()
    assert slot.id == slot_id_for(DOCTOR, START)


def test_then_names_what_differs():
    with pytest.raises(AssertionError, match=r"reason: expected 'busy', got 'ill'"):
        given(REQUESTED, Consultation.Confirmed).when(lambda c: c.cancel_by_patient("ill")).then(
            that(Consultation.CancelledByPatient, reason="busy"))
    with pytest.raises(AssertionError, match="expected 0 event"):
        given(REQUESTED).when(Consultation.confirm).then()


def test_then_refused_expects_the_error_and_no_event():
    given(REQUESTED).when(Consultation.complete).then_refused(ConsultationStateError)
    with pytest.raises(pytest.fail.Exception):
        given(REQUESTED).when(Consultation.confirm).then_refused(ConsultationStateError)


def test_a_command_may_create_the_aggregate():
    consultation = given().when(lambda _: Consultation(patient_id=PATIENT, doctor_id=DOCTOR, start=START,
                                                       reason="cough")).then(REQUESTED)
    assert consultation.version == 1


# Hypothesis profiles -------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "profile"), [
    ({}, "quick"),
    ({"CI": "true"}, "thorough"),
    ({"CLINIC_REQUIRE_SERVICES": "1"}, "thorough"),
    ({"CLINIC_REQUIRE_SERVICES": "1", "HYPOTHESIS_PROFILE": "quick"}, "quick"),
    ({"HYPOTHESIS_PROFILE": "thorough"}, "thorough"),
])
def test_the_profile_is_quick_locally_and_thorough_in_ci(env, profile):
    assert hypothesis_profile(env) == profile
