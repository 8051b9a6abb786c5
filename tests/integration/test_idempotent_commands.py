"""Idempotent commands on real stores: one key sent by many callers at once acts once, on every backend.

The receipt commits in the command's own transaction (group commit included, on PostgreSQL), so the
requests that lose the race record nothing and are answered from the winner's receipt.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import UUID

import pytest

import application.idempotency as idempotency
from application.clinic import Clinic
from application.idempotency import IdempotencyKey, created, once
from domain.receipts import IdempotencyKeyReusedError
from tests.kit.concurrency import all_at_once

START = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)
CALLERS = 12
KEY = IdempotencyKey(scope="patient-app", key="retry-me", request="sha256-of-the-request")


def requested(clinic: Clinic) -> list[UUID]:
    """Every consultation recorded, from the consultations log."""
    notifications = clinic.consultations.recorder.select_notifications(start=1, limit=10_000)
    return [n.originator_id for n in notifications if n.topic.endswith("Consultation.Requested")]


def book_at_once(clinic: Clinic, patient: UUID, doctor: UUID, key: IdempotencyKey) -> list[UUID]:
    """``CALLERS`` retries of one booking under one key, released together."""
    return all_at_once([lambda: clinic.book(patient, doctor, START, "check-up", key=key).consultation_id] * CALLERS)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_one_key_sent_by_many_callers_at_once_books_one_consultation(make_clinic, backend):
    # Given a patient, a doctor and an open slot
    clinic = make_clinic(backend)
    patient = clinic.registry.register_patient("Ana", "ana@example.org", date(1990, 1, 1), True)
    doctor = clinic.registry.register_doctor("Dr. Rui", "cardiology")
    clinic.open_slots(doctor, [(START, 30)])
    # When a client's retries of one booking arrive together
    answers = book_at_once(clinic, patient, doctor, KEY)
    clinic.wait_until_settled(timeout=60)
    # Then every one is answered with the same consultation, recorded once and confirmed
    assert len(set(answers)) == 1 and len(answers) == CALLERS
    assert requested(clinic) == answers[:1]
    assert clinic.consultations.consultation(answers[0]).status == "CONFIRMED"


def test_a_key_past_its_lifetime_is_a_new_command_and_the_receipt_then_answers_for_that(make_clinic, monkeypatch):
    clinic = make_clinic("postgres")
    registry = clinic.registry
    first = once(registry, KEY, lambda: registry.register_doctor("Dr. Rui", "gp"), created)
    assert once(registry, KEY, lambda: registry.register_doctor("Dr. Rui", "gp"), created) == first
    # when the key comes back after its lifetime, with another request
    later = datetime.now(UTC) + idempotency.KEY_LIFETIME + timedelta(seconds=1)
    monkeypatch.setattr(idempotency, "_now", lambda: later)
    renewed = IdempotencyKey(KEY.scope, KEY.key, "sha256-of-another-request")
    second = once(registry, renewed, lambda: registry.register_doctor("Dr. Eva", "gp"), created)
    # then it is carried out, and repeats of the new request are answered with its outcome
    assert second != first
    monkeypatch.setattr(idempotency, "_now", lambda: datetime.now(UTC))
    assert once(registry, renewed, lambda: registry.register_doctor("Dr. Eva", "gp"), created) == second
    with pytest.raises(IdempotencyKeyReusedError):
        once(registry, KEY, lambda: registry.register_doctor("Dr. Rui", "gp"), created)
