"""A registered patient: personal data and consent to data processing."""

from __future__ import annotations

from datetime import date
from typing import Any

from eventsourcing.domain import event

from domain.base import ClinicAggregate


class Patient(ClinicAggregate):
    """Someone who may book consultations once they consent to data processing."""

    class Registered(ClinicAggregate.Created):
        """Version 2 added ``consent``; a version 1 event had none, read as not given."""

        class_version = 2
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

    @event(Registered)
    def __init__(self, name: str, email: str, birth_date: date, consent: bool) -> None:
        self.name = name
        self.email = email
        self.birth_date = birth_date
        self.consent = consent

    @property
    def may_book(self) -> bool:
        """Only patients who consent to data processing may book."""
        return self.consent

    def give_consent(self) -> None:
        if not self.consent:
            self._consent_given()

    def withdraw_consent(self) -> None:
        if self.consent:
            self._consent_withdrawn()

    @event(ConsentGiven)
    def _consent_given(self) -> None:
        self.consent = True

    @event(ConsentWithdrawn)
    def _consent_withdrawn(self) -> None:
        self.consent = False
