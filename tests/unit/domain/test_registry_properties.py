"""Patient and doctor invariants under any sequence of their commands.

(The base machine adds: rebuilt from its events, the aggregate equals the live one; its versions
follow one another. The run's size is the Hypothesis profile's.)
"""

from __future__ import annotations

from itertools import pairwise

from hypothesis.stateful import initialize, invariant, rule

from domain.personal_data import ERASED
from tests.kit.machines import AggregateMachine
from tests.kit.strategies import doctor_commands, doctors, patient_commands, patients


class PatientMachine(AggregateMachine):
    @initialize(patient=patients)
    def register(self, patient) -> None:
        self.start(patient)
        self.was_erased = False

    @rule(command=patient_commands)
    def command(self, command) -> None:
        self.act(command)

    @invariant()
    def may_book_only_with_consent_and_data(self) -> None:
        patient = self.aggregate
        assert patient.may_book == (patient.consent and not patient.erased)

    @invariant()
    def erasure_is_for_good(self) -> None:
        patient = self.aggregate
        assert not (self.was_erased and not patient.erased)
        self.was_erased = patient.erased
        if patient.erased:
            assert (patient.name, patient.email, patient.birth_date) == (ERASED, ERASED, None)

    @invariant()
    def every_event_changes_something(self) -> None:
        # consent given twice, withdrawn twice or erased twice records nothing the second time
        kinds = [type(event).__name__ for event in self.events[1:]]
        consent = [k for k in kinds if k in ("ConsentGiven", "ConsentWithdrawn")]
        assert all(a != b for a, b in pairwise(consent))
        assert kinds.count("PersonalDataErased") <= 1


class DoctorMachine(AggregateMachine):
    @initialize(doctor=doctors)
    def register(self, doctor) -> None:
        self.start(doctor)

    @rule(command=doctor_commands)
    def command(self, command) -> None:
        self.act(command)

    @invariant()
    def active_unless_last_deactivated(self) -> None:
        changes = [type(event).__name__ for event in self.events[1:]]
        assert self.aggregate.active == (not changes or changes[-1] == "Reactivated")
        assert all(a != b for a, b in pairwise(changes))


TestPatientMachine = PatientMachine.TestCase
TestDoctorMachine = DoctorMachine.TestCase
