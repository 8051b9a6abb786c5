"""Registry rules: a patient books only with consent; a doctor is active until deactivated."""

from __future__ import annotations

from datetime import date

import pytest

from domain.doctor import Doctor
from domain.patient import Patient


def patient(consent: bool) -> Patient:
    registered = Patient(name="Ada", email="ada@example.org", birth_date=date(1990, 5, 1), consent=consent)
    registered.collect_events()
    return registered


def doctor(active: bool = True) -> Doctor:
    registered = Doctor(name="Gregory House", specialty="diagnostics")
    if not active:
        registered.deactivate()
    registered.collect_events()
    return registered


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


def test_given_patient_without_consent_when_consent_given_then_may_book():
    # given
    registered = patient(consent=False)
    # when
    registered.give_consent()
    # then
    [event] = registered.collect_events()
    assert isinstance(event, Patient.ConsentGiven)
    assert registered.may_book


def test_given_patient_with_consent_when_consent_given_again_then_no_event():
    # given
    registered = patient(consent=True)
    # when
    registered.give_consent()
    # then
    assert registered.collect_events() == []
    assert registered.may_book


def test_given_patient_with_consent_when_consent_withdrawn_then_may_not_book():
    # given
    registered = patient(consent=True)
    # when
    registered.withdraw_consent()
    # then
    [event] = registered.collect_events()
    assert isinstance(event, Patient.ConsentWithdrawn)
    assert not registered.may_book


def test_given_patient_without_consent_when_consent_withdrawn_then_no_event():
    # given
    registered = patient(consent=False)
    # when
    registered.withdraw_consent()
    # then
    assert registered.collect_events() == []
    assert not registered.may_book


# Doctor


def test_given_nothing_when_doctor_registered_then_active():
    # when
    registered = Doctor(name="Gregory House", specialty="diagnostics")
    # then
    [event] = registered.collect_events()
    assert isinstance(event, Doctor.Registered)
    assert (event.name, event.specialty) == ("Gregory House", "diagnostics")
    assert registered.active


def test_given_active_doctor_when_deactivated_then_inactive():
    # given
    registered = doctor(active=True)
    # when
    registered.deactivate()
    # then
    [event] = registered.collect_events()
    assert isinstance(event, Doctor.Deactivated)
    assert not registered.active


def test_given_inactive_doctor_when_deactivated_again_then_no_event():
    # given
    registered = doctor(active=False)
    # when
    registered.deactivate()
    # then
    assert registered.collect_events() == []
    assert not registered.active


def test_given_inactive_doctor_when_reactivated_then_active():
    # given
    registered = doctor(active=False)
    # when
    registered.reactivate()
    # then
    [event] = registered.collect_events()
    assert isinstance(event, Doctor.Reactivated)
    assert registered.active


def test_given_active_doctor_when_reactivated_then_no_event():
    # given
    registered = doctor(active=True)
    # when
    registered.reactivate()
    # then
    assert registered.collect_events() == []
    assert registered.active


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
