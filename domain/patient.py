"""A registered patient: personal data and consent to data processing."""

from __future__ import annotations

from datetime import date
from typing import Any

from eventsourcing.domain import event

from domain.base import ClinicAggregate
from domain.personal_data import ERASED, SUBJECT_IS_ORIGINATOR


class Patient(ClinicAggregate):
    """Someone who may book consultations once they consent to data processing."""

    class Registered(ClinicAggregate.Created):
        """Version 2 added ``consent``; a version 1 event had none, read as not given."""

        class_version = 2
        personal_data = ("name", "email", "birth_date")
        data_subject = SUBJECT_IS_ORIGINATOR
        name: str
        email: str
        birth_date: date
        consent: bool

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["consent"] = False

    class ConsentGiven(ClinicAggregate.Event):
        pass

    class ConsentWithdrawn(ClinicAggregate.Event):
        pass

    class PersonalDataErased(ClinicAggregate.Event):
        """The patient's personal data was erased (GDPR Art. 17); the event itself holds none.

        Who asked is the event's ``actor``, when its ``timestamp``.
        """

    @event(Registered)
    def __init__(self, name: str, email: str, birth_date: date, consent: bool) -> None:
        self.name = name
        self.email = email
        self.birth_date: date | None = birth_date
        self.consent = consent
        self.erased = False

    @property
    def may_book(self) -> bool:
        """Only patients who consent to data processing, and whose data is not erased, may book."""
        return self.consent and not self.erased

    def give_consent(self) -> None:
        if not self.consent:
            self._consent_given()

    def withdraw_consent(self) -> None:
        if self.consent:
            self._consent_withdrawn()

    def erase(self) -> None:
        """Record that the patient's personal data is erased; erasing again is a no-op."""
        if not self.erased:
            self._personal_data_erased()

    @event(ConsentGiven)
    def _consent_given(self) -> None:
        self.consent = True

    @event(ConsentWithdrawn)
    def _consent_withdrawn(self) -> None:
        self.consent = False

    @event(PersonalDataErased)
    def _personal_data_erased(self) -> None:
        self.name = ERASED
        self.email = ERASED
        self.birth_date = None
        self.erased = True
