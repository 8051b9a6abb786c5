"""A doctor in the registry: name, specialty, active or not."""

from __future__ import annotations

from eventsourcing.domain import event

from domain.base import ClinicAggregate


class Doctor(ClinicAggregate):
    """A doctor who can be booked while active."""

    class Registered(ClinicAggregate.Created):
        name: str
        specialty: str

    class Deactivated(ClinicAggregate.Event):
        pass

    class Reactivated(ClinicAggregate.Event):
        pass

    @event(Registered)
    def __init__(self, name: str, specialty: str) -> None:
        self.name = name
        self.specialty = specialty
        self.active = True

    def deactivate(self) -> None:
        """Stop taking bookings; deactivating again is a no-op."""
        if self.active:
            self._deactivated()

    def reactivate(self) -> None:
        if not self.active:
            self._reactivated()

    @event(Deactivated)
    def _deactivated(self) -> None:
        self.active = False

    @event(Reactivated)
    def _reactivated(self) -> None:
        self.active = True
