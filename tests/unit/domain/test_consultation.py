"""Consultation rules: requested → confirmed | rejected; confirmed → cancelled, completed, no-show."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from domain.consultation import (
    ClinicalNote,
    Consultation,
    ConsultationStateError,
    ConsultationStatus,
)

START = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


def requested() -> Consultation:
    consultation = Consultation(patient_id=uuid4(), doctor_id=uuid4(), start=START, reason="cough")
    consultation.collect_events()
    return consultation


def confirmed() -> Consultation:
    consultation = requested()
    consultation.confirm()
    consultation.collect_events()
    return consultation


def rejected() -> Consultation:
    consultation = requested()
    consultation.reject("slot_unavailable")
    consultation.collect_events()
    return consultation


def cancelled() -> Consultation:
    consultation = confirmed()
    consultation.cancel_by_patient("busy")
    consultation.collect_events()
    return consultation


def completed() -> Consultation:
    consultation = confirmed()
    consultation.complete()
    consultation.collect_events()
    return consultation


def no_show() -> Consultation:
    consultation = confirmed()
    consultation.mark_no_show()
    consultation.collect_events()
    return consultation


# Deciding


def test_given_nothing_when_requested_then_requested_event():
    # given
    patient, doctor = uuid4(), uuid4()
    # when
    consultation = Consultation(patient_id=patient, doctor_id=doctor, start=START, reason="cough")
    # then
    [event] = consultation.collect_events()
    assert isinstance(event, Consultation.Requested)
    assert (event.patient_id, event.doctor_id, event.start, event.reason) == (patient, doctor, START, "cough")
    assert consultation.status == ConsultationStatus.REQUESTED


def test_given_nothing_when_requested_with_naive_start_then_refused():
    # when / then
    with pytest.raises(ValueError):
        Consultation(patient_id=uuid4(), doctor_id=uuid4(), start=START.replace(tzinfo=None), reason="x")


def test_given_requested_when_confirmed_then_confirmed():
    # given
    consultation = requested()
    # when
    consultation.confirm()
    # then
    [event] = consultation.collect_events()
    assert isinstance(event, Consultation.Confirmed)
    assert consultation.status == ConsultationStatus.CONFIRMED


def test_given_confirmed_when_confirmed_again_then_no_event():
    # given
    consultation = confirmed()
    # when
    consultation.confirm()
    # then
    assert consultation.collect_events() == []


def test_given_requested_when_rejected_then_rejected_with_reason():
    # given
    consultation = requested()
    # when
    consultation.reject("doctor_inactive")
    # then
    [event] = consultation.collect_events()
    assert isinstance(event, Consultation.Rejected)
    assert event.reason == "doctor_inactive"
    assert consultation.status == ConsultationStatus.REJECTED
    assert consultation.rejection_reason == "doctor_inactive"


def test_given_rejected_when_rejected_again_then_no_event():
    # given
    consultation = rejected()
    # when
    consultation.reject("slot_unavailable")
    # then
    assert consultation.collect_events() == []


@pytest.mark.parametrize("given", [rejected, cancelled, completed, no_show])
def test_given_decided_otherwise_when_confirmed_then_refused(given):
    # given
    consultation = given()
    # when / then
    with pytest.raises(ConsultationStateError):
        consultation.confirm()


@pytest.mark.parametrize("given", [confirmed, cancelled, completed, no_show])
def test_given_past_requested_when_rejected_then_refused(given):
    # given
    consultation = given()
    # when / then
    with pytest.raises(ConsultationStateError):
        consultation.reject("slot_unavailable")


# After confirmation


@pytest.mark.parametrize(
    ("cancel", "event_class"),
    [
        (Consultation.cancel_by_patient, Consultation.CancelledByPatient),
        (Consultation.cancel_by_clinic, Consultation.CancelledByClinic),
    ],
)
def test_given_confirmed_when_cancelled_then_cancelled_with_reason(cancel, event_class):
    # given
    consultation = confirmed()
    # when
    cancel(consultation, "ill")
    # then
    [event] = consultation.collect_events()
    assert isinstance(event, event_class)
    assert event.reason == "ill"
    assert consultation.status == ConsultationStatus.CANCELLED
    assert consultation.cancellation_reason == "ill"


@pytest.mark.parametrize("given", [requested, rejected, cancelled, completed, no_show])
@pytest.mark.parametrize("cancel", [Consultation.cancel_by_patient, Consultation.cancel_by_clinic])
def test_given_not_confirmed_when_cancelled_then_refused(given, cancel):
    # given
    consultation = given()
    # when / then
    with pytest.raises(ConsultationStateError):
        cancel(consultation, "ill")


@pytest.mark.parametrize(
    ("command", "event_class", "status"),
    [
        (Consultation.complete, Consultation.Completed, ConsultationStatus.COMPLETED),
        (Consultation.mark_no_show, Consultation.MarkedNoShow, ConsultationStatus.NO_SHOW),
    ],
)
def test_given_confirmed_when_ended_then_ended(command, event_class, status):
    # given
    consultation = confirmed()
    # when
    command(consultation)
    # then
    [event] = consultation.collect_events()
    assert isinstance(event, event_class)
    assert consultation.status == status


@pytest.mark.parametrize("given", [requested, rejected, cancelled, completed, no_show])
@pytest.mark.parametrize("command", [Consultation.complete, Consultation.mark_no_show])
def test_given_not_confirmed_when_ended_then_refused(given, command):
    # given
    consultation = given()
    # when / then
    with pytest.raises(ConsultationStateError):
        command(consultation)


# Notes


@pytest.mark.parametrize("given", [confirmed, completed])
def test_given_confirmed_or_completed_when_note_added_then_note_kept(given):
    # given
    consultation = given()
    # when
    consultation.add_note(author="dr-house", text="Rest and fluids.")
    # then
    [event] = consultation.collect_events()
    assert isinstance(event, Consultation.NoteAdded)
    assert (event.author, event.text) == ("dr-house", "Rest and fluids.")
    assert consultation.notes == [
        ClinicalNote(author="dr-house", text="Rest and fluids.", written_at=event.timestamp)
    ]


@pytest.mark.parametrize("given", [requested, rejected, cancelled, no_show])
def test_given_not_confirmed_nor_completed_when_note_added_then_refused(given):
    # given
    consultation = given()
    # when / then
    with pytest.raises(ConsultationStateError):
        consultation.add_note(author="dr-house", text="Rest and fluids.")


@pytest.mark.parametrize("text", ["", "   \n"])
def test_given_confirmed_when_empty_note_added_then_refused(text):
    # given
    consultation = confirmed()
    # when / then
    with pytest.raises(ValueError):
        consultation.add_note(author="dr-house", text=text)
