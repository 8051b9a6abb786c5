"""Consultation invariants under any sequence of decisions, endings and notes."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import reduce
from uuid import uuid4

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from domain.base import DomainError
from domain.consultation import Consultation
from domain.consultation import ConsultationStatus as S

ALLOWED = {
    (S.REQUESTED, S.CONFIRMED), (S.REQUESTED, S.REJECTED),
    (S.CONFIRMED, S.CANCELLED), (S.CONFIRMED, S.COMPLETED), (S.CONFIRMED, S.NO_SHOW),
}
reasons = st.sampled_from(["ill", "slot_unavailable", "doctor_inactive"])


def state(aggregate) -> dict:
    return {k: v for k, v in aggregate.__dict__.items() if k != "_pending_events"}


class ConsultationMachine(RuleBasedStateMachine):
    @initialize()
    def request(self) -> None:
        self.consultation = Consultation(
            patient_id=uuid4(), doctor_id=uuid4(), start=datetime(2027, 1, 4, 9, tzinfo=UTC), reason="cough"
        )
        self.events = list(self.consultation.collect_events())
        self.previous = self.consultation.status
        self.ended_without_visit = False

    def attempt(self, command, *args) -> None:
        try:
            command(*args)
        except DomainError:
            pass
        self.events.extend(self.consultation.collect_events())

    @rule()
    def confirm(self) -> None:
        self.attempt(self.consultation.confirm)

    @rule(reason=reasons)
    def reject(self, reason) -> None:
        self.attempt(self.consultation.reject, reason)

    @rule(reason=reasons)
    def cancel_by_patient(self, reason) -> None:
        self.attempt(self.consultation.cancel_by_patient, reason)

    @rule(reason=reasons)
    def cancel_by_clinic(self, reason) -> None:
        self.attempt(self.consultation.cancel_by_clinic, reason)

    @rule()
    def complete(self) -> None:
        self.attempt(self.consultation.complete)

    @rule()
    def no_show(self) -> None:
        self.attempt(self.consultation.mark_no_show)

    @rule(text=st.sampled_from(["Rest.", "Fluids."]))
    def add_note(self, text) -> None:
        self.attempt(self.consultation.add_note, "dr-house", text)

    @invariant()
    def rejected_or_cancelled_never_confirmed(self) -> None:
        status = self.consultation.status
        self.ended_without_visit |= status in (S.REJECTED, S.CANCELLED)
        assert not (self.ended_without_visit and status == S.CONFIRMED)

    @invariant()
    def status_moves_only_along_allowed_graph(self) -> None:
        status = self.consultation.status
        assert status == self.previous or (self.previous, status) in ALLOWED
        self.previous = status

    @invariant()
    def rebuilt_from_events_equals_live(self) -> None:
        rebuilt = reduce(lambda aggregate, event: event.mutate(aggregate), self.events, None)
        assert state(rebuilt) == state(self.consultation)


ConsultationMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)
TestConsultationMachine = ConsultationMachine.TestCase
