"""Registry rules: a patient books only with consent; a doctor is active until deactivated."""

from __future__ import annotations

from datetime import date

import pytest

from domain.doctor import Doctor
from domain.patient import Patient
from tests.kit import given, that
from tests.kit.gwt import That


def patient(consent: bool) -> Patient:
    registered = Patient(name="Ada", email="ada@example.org", birth_date=date(1990, 5, 1), consent=consent)
    registered.collect_events()
    return registered


def registered_with(consent: bool) -> That:
    return that(Patient.Registered, name="Ada", email="ada@example.org", birth_date=date(1990, 5, 1), consent=consent)


# Patient


@pytest.mark.parametrize("consent", [True, False])
def test_given_nothing_when_patient_registered_then_registered_with_consent(consent):
    # when
    registered = Patient(name="Ada", email="ada@example.org", birth_date=date(1990, 5, 1), consent=consent)
    # then
    [event] = registered.collect_events()
    assert isinstance(event, Patient.Registered)
    assert (event.name, event.email, event.birth_date, event.consent) == (
        "Ada", "ada@example.org", date(1990, 5, 1), consent,
    )
    assert registered.consent is consent
    assert registered.may_book is consent


def test_given_v1_registration_when_upcast_then_consent_not_given():
    # given
    state = {"name": "Ada", "email": "ada@example.org", "birth_date": date(1990, 5, 1)}
    # when
    Patient.Registered.upcast_v1_v2(state)
    # then
    assert state["consent"] is False


@pytest.mark.parametrize(("consent", "command", "recorded", "may_book"), [
    (False, Patient.give_consent, [Patient.ConsentGiven], True),
    (True, Patient.give_consent, [], True),
    (True, Patient.withdraw_consent, [Patient.ConsentWithdrawn], False),
    (False, Patient.withdraw_consent, [], False),
])
def test_consent_is_given_and_withdrawn_once(consent, command, recorded, may_book):
    registered = given(registered_with(consent)).when(command).then(*recorded)
    assert registered.may_book is may_book


# Doctor


def test_given_nothing_when_doctor_registered_then_active():
    registered = given().when(lambda _: Doctor(name="Gregory House", specialty="diagnostics")).then(
        that(Doctor.Registered, name="Gregory House", specialty="diagnostics"))
    assert registered.active


ACTIVE = (that(Doctor.Registered, name="Gregory House", specialty="diagnostics"),)
INACTIVE = (*ACTIVE, Doctor.Deactivated)


@pytest.mark.parametrize(("history", "command", "recorded", "active"), [
    (ACTIVE, Doctor.deactivate, [Doctor.Deactivated], False),
    (INACTIVE, Doctor.deactivate, [], False),
    (INACTIVE, Doctor.reactivate, [Doctor.Reactivated], True),
    (ACTIVE, Doctor.reactivate, [], True),
], ids=["deactivated", "deactivated-again", "reactivated", "reactivated-while-active"])
def test_a_doctor_is_deactivated_and_reactivated_once(history, command, recorded, active):
    registered = given(*history).when(command).then(*recorded)
    assert registered.active is active


# Patient: erasure of personal data


def test_given_registered_patient_when_erased_then_personal_data_erased_and_may_not_book():
    # given
    registered = patient(consent=True)
    # when
    registered.erase()
    # then
    [event] = registered.collect_events()
    assert isinstance(event, Patient.PersonalDataErased)
    assert set(vars(event)) - {"originator_id", "originator_version", "timestamp", "originator_topic",
                               "correlation_id", "causation_id", "saga_id", "actor", "traceparent"} == set()
    assert (registered.name, registered.email, registered.birth_date) == ("[erased]", "[erased]", None)
    assert registered.erased and not registered.may_book


def test_given_erased_patient_when_erased_again_then_nothing_happens():
    # given
    registered = patient(consent=True)
    registered.erase()
    registered.collect_events()
    # when
    registered.erase()
    # then
    assert registered.collect_events() == []


def test_given_erased_patient_when_consent_given_then_still_may_not_book():
    # given
    registered = patient(consent=False)
    registered.erase()
    registered.collect_events()
    # when
    registered.give_consent()
    # then
    assert registered.consent and not registered.may_book


def test_personal_data_is_declared_on_the_events_that_carry_it():
    from domain.consultation import Consultation
    from domain.personal_data import personal_fields, subject_field

    declared = {cls.__qualname__: (personal_fields(cls), subject_field(cls)) for cls in (
        Patient.Registered, Patient.PersonalDataErased, Consultation.Requested, Consultation.NoteAdded,
        Consultation.CancelledByPatient, Consultation.CancelledByClinic, Consultation.Rejected)}
    assert declared == {
        "Patient.Registered": (("name", "email", "birth_date"), "originator_id"),
        "Patient.PersonalDataErased": ((), None),
        "Consultation.Requested": (("reason",), "patient_id"),
        "Consultation.NoteAdded": (("text",), None),
        "Consultation.CancelledByPatient": (("reason",), None),
        "Consultation.CancelledByClinic": (("reason",), None),
        "Consultation.Rejected": ((), None),
    }
