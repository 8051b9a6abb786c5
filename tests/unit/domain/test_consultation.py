"""Consultation rules: requested → confirmed | rejected | cancelled; confirmed → cancelled, completed, no-show.

Each test is given a consultation's history (replayed through its mutators), runs one command and
checks the events it records (tests/kit/gwt.py).
"""

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
from tests.kit import given, that
from tests.kit.gwt import Given

START = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
PATIENT, DOCTOR = uuid4(), uuid4()
REQUESTED = that(Consultation.Requested, patient_id=PATIENT, doctor_id=DOCTOR, start=START, reason="cough")

HISTORIES = {
    "requested": (REQUESTED,),
    "confirmed": (REQUESTED, Consultation.Confirmed),
    "rejected": (REQUESTED, that(Consultation.Rejected, reason="slot_unavailable")),
    "cancelled": (REQUESTED, Consultation.Confirmed, that(Consultation.CancelledByPatient, reason="busy")),
    "cancelled_while_requested": (REQUESTED, that(Consultation.CancelledByPatient, reason="busy")),
    "completed": (REQUESTED, Consultation.Confirmed, Consultation.Completed),
    "no_show": (REQUESTED, Consultation.Confirmed, Consultation.MarkedNoShow),
}


def a_consultation(history: str) -> Given:
    """Given: a consultation with this history."""
    return given(*HISTORIES[history])


# Deciding


def test_given_nothing_when_requested_then_requested_event():
    consultation = given().when(
        lambda _: Consultation(patient_id=PATIENT, doctor_id=DOCTOR, start=START, reason="cough"),
    ).then(REQUESTED)
    assert consultation.status == ConsultationStatus.REQUESTED


def test_given_nothing_when_requested_with_naive_start_then_refused():
    given().when(
        lambda _: Consultation(patient_id=uuid4(), doctor_id=uuid4(), start=START.replace(tzinfo=None), reason="x"),
    ).then_refused(ValueError)


def test_given_requested_when_confirmed_then_confirmed():
    consultation = a_consultation("requested").when(Consultation.confirm).then(Consultation.Confirmed)
    assert consultation.status == ConsultationStatus.CONFIRMED


def test_given_confirmed_when_confirmed_again_then_no_event():
    a_consultation("confirmed").when(Consultation.confirm).then_nothing()


def test_given_requested_when_rejected_then_rejected_with_reason():
    consultation = a_consultation("requested").when(lambda c: c.reject("doctor_inactive")).then(
        that(Consultation.Rejected, reason="doctor_inactive"))
    assert consultation.status == ConsultationStatus.REJECTED
    assert consultation.rejection_reason == "doctor_inactive"


def test_given_rejected_when_rejected_again_then_no_event():
    a_consultation("rejected").when(lambda c: c.reject("slot_unavailable")).then_nothing()


@pytest.mark.parametrize("history", ["rejected", "completed", "no_show"])
def test_given_decided_otherwise_when_confirmed_then_refused(history):
    a_consultation(history).when(Consultation.confirm).then_refused(ConsultationStateError)


@pytest.mark.parametrize("history", ["confirmed", "completed", "no_show"])
def test_given_past_requested_when_rejected_then_refused(history):
    a_consultation(history).when(lambda c: c.reject("slot_unavailable")).then_refused(ConsultationStateError)


@pytest.mark.parametrize("history", ["cancelled", "cancelled_while_requested"])
@pytest.mark.parametrize("verdict", [Consultation.confirm, lambda c: c.reject("slot_unavailable")],
                         ids=["confirm", "reject"])
def test_given_cancelled_when_the_saga_decides_late_then_it_stays_cancelled(history, verdict):
    # the saga decided before it learnt of the cancellation; it gives the slot back on learning it
    consultation = a_consultation(history).when(verdict).then_nothing()
    assert consultation.status == ConsultationStatus.CANCELLED


# After confirmation


@pytest.mark.parametrize(
    ("cancel", "event_class"),
    [
        (Consultation.cancel_by_patient, Consultation.CancelledByPatient),
        (Consultation.cancel_by_clinic, Consultation.CancelledByClinic),
    ],
)
def test_given_confirmed_when_cancelled_then_cancelled_with_reason(cancel, event_class):
    consultation = a_consultation("confirmed").when(lambda c: cancel(c, "ill")).then(that(event_class, reason="ill"))
    assert consultation.status == ConsultationStatus.CANCELLED
    assert consultation.cancellation_reason == "ill"


@pytest.mark.parametrize(
    ("cancel", "event_class"),
    [
        (Consultation.cancel_by_patient, Consultation.CancelledByPatient),
        (Consultation.cancel_by_clinic, Consultation.CancelledByClinic),
    ],
)
def test_given_requested_when_cancelled_then_cancelled_before_the_saga_decides(cancel, event_class):
    consultation = a_consultation("requested").when(lambda c: cancel(c, "ill")).then(that(event_class, reason="ill"))
    assert consultation.status == ConsultationStatus.CANCELLED


@pytest.mark.parametrize("history", ["rejected", "cancelled", "cancelled_while_requested", "completed", "no_show"])
@pytest.mark.parametrize("cancel", [Consultation.cancel_by_patient, Consultation.cancel_by_clinic])
def test_given_decided_otherwise_when_cancelled_then_refused(history, cancel):
    a_consultation(history).when(lambda c: cancel(c, "ill")).then_refused(ConsultationStateError)


@pytest.mark.parametrize(
    ("command", "event_class", "status"),
    [
        (Consultation.complete, Consultation.Completed, ConsultationStatus.COMPLETED),
        (Consultation.mark_no_show, Consultation.MarkedNoShow, ConsultationStatus.NO_SHOW),
    ],
)
def test_given_confirmed_when_ended_then_ended(command, event_class, status):
    consultation = a_consultation("confirmed").when(command).then(event_class)
    assert consultation.status == status


@pytest.mark.parametrize("history", ["requested", "rejected", "cancelled", "completed", "no_show"])
@pytest.mark.parametrize("command", [Consultation.complete, Consultation.mark_no_show])
def test_given_not_confirmed_when_ended_then_refused(history, command):
    a_consultation(history).when(command).then_refused(ConsultationStateError)


# Notes


@pytest.mark.parametrize("history", ["confirmed", "completed"])
def test_given_confirmed_or_completed_when_note_added_then_note_kept(history):
    consultation = a_consultation(history).when(lambda c: c.add_note(author="dr-house", text="Rest and fluids.")).then(
        that(Consultation.NoteAdded, author="dr-house", text="Rest and fluids."))
    [note] = consultation.notes
    assert note == ClinicalNote(author="dr-house", text="Rest and fluids.", written_at=consultation.modified_on)


@pytest.mark.parametrize("history", ["requested", "rejected", "cancelled", "no_show"])
def test_given_not_confirmed_nor_completed_when_note_added_then_refused(history):
    a_consultation(history).when(lambda c: c.add_note(author="dr-house", text="Rest and fluids.")).then_refused(
        ConsultationStateError)


@pytest.mark.parametrize("text", ["", "   \n"])
def test_given_confirmed_when_empty_note_added_then_refused(text):
    a_consultation("confirmed").when(lambda c: c.add_note(author="dr-house", text=text)).then_refused(ValueError)
