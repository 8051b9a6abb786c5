"""Consultation invariants under any sequence of decisions, endings and notes.

(The base machine adds: rebuilt from its events, a consultation equals the live one; its versions
follow one another. The run's size is the Hypothesis profile's.)
"""

from __future__ import annotations

from hypothesis.stateful import initialize, invariant, rule

from domain.base import DomainError
from domain.consultation import ConsultationStatus as S
from tests.kit.machines import AggregateMachine
from tests.kit.strategies import consultation_commands, consultations

ALLOWED = {
    (S.REQUESTED, S.CONFIRMED), (S.REQUESTED, S.REJECTED), (S.REQUESTED, S.CANCELLED),
    (S.CONFIRMED, S.CANCELLED), (S.CONFIRMED, S.COMPLETED), (S.CONFIRMED, S.NO_SHOW),
}


class ConsultationMachine(AggregateMachine):
    refusals = (DomainError, ValueError)  # ValueError: an empty note

    @initialize(consultation=consultations)
    def request(self, consultation) -> None:
        self.start(consultation)
        self.previous = consultation.status
        self.ended_without_visit = False
        self.notes = 0

    @rule(command=consultation_commands)
    def command(self, command) -> None:
        self.act(command)

    @invariant()
    def rejected_or_cancelled_never_confirmed(self) -> None:
        status = self.aggregate.status
        self.ended_without_visit |= status in (S.REJECTED, S.CANCELLED)
        assert not (self.ended_without_visit and status == S.CONFIRMED)

    @invariant()
    def status_moves_only_along_allowed_graph(self) -> None:
        status = self.aggregate.status
        assert status == self.previous or (self.previous, status) in ALLOWED
        self.previous = status

    @invariant()
    def notes_are_added_only_while_confirmed_or_completed(self) -> None:
        notes = len(self.aggregate.notes)
        assert notes == self.notes or self.aggregate.status in (S.CONFIRMED, S.COMPLETED)
        self.notes = notes


TestConsultationMachine = ConsultationMachine.TestCase
