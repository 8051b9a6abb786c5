"""A doctor's bookable slot: open → held (with expiry) → booked, or released; closed → reopened."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from domain.base import ClinicAggregate, DomainError
from domain.values import require_aware

SLOT_NAMESPACE = uuid5(NAMESPACE_URL, "urn:clinic:slot")


class SlotStatus(StrEnum):
    OPEN = "OPEN"
    HELD = "HELD"
    BOOKED = "BOOKED"
    CLOSED = "CLOSED"


STATUS_AFTER: dict[str, SlotStatus] = {
    "Opened": SlotStatus.OPEN,
    "Held": SlotStatus.HELD,
    "Booked": SlotStatus.BOOKED,
    "Released": SlotStatus.OPEN,
    "Closed": SlotStatus.CLOSED,
    "Reopened": SlotStatus.OPEN,
}
"""The status each of a slot's events leaves it in (by class name): its mutators and the slot read model
(``projections/doctor_slots.py``) both read it."""


class SlotUnavailableError(DomainError):
    """The slot is held or booked by another booking, or closed."""


class SlotInUseError(DomainError):
    """A held or booked slot cannot be closed."""


class SlotNotHeldError(DomainError):
    """Only the booking that holds a slot may book it."""


def slot_id_for(doctor_id: UUID, start: datetime) -> UUID:
    """The one id of the doctor's slot starting at ``start`` (any timezone)."""
    start = require_aware(start, "start")
    return uuid5(SLOT_NAMESPACE, f"{doctor_id}/{start.isoformat()}")


class Slot(ClinicAggregate):
    """A period of a doctor's time that at most one booking can take."""

    class Opened(ClinicAggregate.Created):
        doctor_id: UUID
        start: datetime
        duration_minutes: int

    class Held(ClinicAggregate.Event):
        booking_id: UUID
        expires_at: datetime

    class Booked(ClinicAggregate.Event):
        booking_id: UUID

    class Released(ClinicAggregate.Event):
        booking_id: UUID
        reason: str

    class Closed(ClinicAggregate.Event):
        pass

    class Reopened(ClinicAggregate.Event):
        pass

    @staticmethod
    def create_id(doctor_id: UUID, start: datetime, duration_minutes: int) -> UUID:
        return slot_id_for(doctor_id, start)

    @event(Opened)
    def __init__(self, doctor_id: UUID, start: datetime, duration_minutes: int) -> None:
        if duration_minutes <= 0:
            raise ValueError("duration_minutes must be positive")
        self.doctor_id = doctor_id
        self.start = require_aware(start, "start")
        self.duration_minutes = duration_minutes
        self.status = STATUS_AFTER["Opened"]
        self.booking_id: UUID | None = None
        self.hold_expires_at: datetime | None = None

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=self.duration_minutes)

    def is_taken_by_another(self, booking_id: UUID, now: datetime) -> bool:
        """True when another booking holds (unexpired) or has booked this slot."""
        if self.booking_id in (None, booking_id):
            return False
        if self.status == SlotStatus.BOOKED:
            return True
        return self.status == SlotStatus.HELD and self.hold_expires_at is not None and now < self.hold_expires_at

    def hold(self, booking_id: UUID, expires_at: datetime, now: datetime) -> None:
        """Hold for ``booking_id`` until ``expires_at``; holding it again is a no-op."""
        now = require_aware(now, "now")
        if self.status == SlotStatus.CLOSED:
            raise SlotUnavailableError("the slot is closed")
        if self.is_taken_by_another(booking_id, now):
            raise SlotUnavailableError("the slot is taken by another booking")
        if self.booking_id == booking_id:
            return
        self._held(booking_id=booking_id, expires_at=require_aware(expires_at))

    def book(self, booking_id: UUID) -> None:
        """Turn this booking's hold into a booking; booking it again is a no-op."""
        if self.booking_id != booking_id or self.status not in (SlotStatus.HELD, SlotStatus.BOOKED):
            raise SlotNotHeldError("the slot is not held by this booking")
        if self.status == SlotStatus.HELD:
            self._booked(booking_id=booking_id)

    def release(self, booking_id: UUID, reason: str) -> None:
        """Give the slot back; a no-op unless ``booking_id`` holds or booked it."""
        if self.booking_id == booking_id and self.status in (SlotStatus.HELD, SlotStatus.BOOKED):
            self._released(booking_id=booking_id, reason=reason)

    def close(self) -> None:
        """Withdraw an open slot from booking; closing it again is a no-op."""
        if self.status in (SlotStatus.HELD, SlotStatus.BOOKED):
            raise SlotInUseError("the slot is held or booked")
        if self.status == SlotStatus.OPEN:
            self._closed()

    def reopen(self) -> None:
        """Offer a closed slot for booking again; reopening a slot that is not closed is a no-op."""
        if self.status == SlotStatus.CLOSED:
            self._reopened()

    @event(Reopened)
    def _reopened(self) -> None:
        self.status = STATUS_AFTER["Reopened"]

    @event(Held)
    def _held(self, booking_id: UUID, expires_at: datetime) -> None:
        self.status = STATUS_AFTER["Held"]
        self.booking_id = booking_id
        self.hold_expires_at = expires_at

    @event(Booked)
    def _booked(self, booking_id: UUID) -> None:
        self.status = STATUS_AFTER["Booked"]
        self.hold_expires_at = None

    @event(Released)
    def _released(self, booking_id: UUID, reason: str) -> None:
        self.status = STATUS_AFTER["Released"]
        self.booking_id = None
        self.hold_expires_at = None

    @event(Closed)
    def _closed(self) -> None:
        self.status = STATUS_AFTER["Closed"]


class SlotRequestRefused(ClinicAggregate):
    """Scheduling's reply that a booking's hold or book command was refused.

    One per (booking, command), so the refusal is recorded once even for a slot
    that was never opened and so has no stream of its own.
    """

    class Recorded(ClinicAggregate.Created):
        booking_id: UUID
        slot_id: UUID
        command: str
        reason: str

    @staticmethod
    def create_id(booking_id: UUID, slot_id: UUID, command: str, reason: str) -> UUID:
        return uuid5(SLOT_NAMESPACE, f"refusal/{booking_id}/{command}")

    @event(Recorded)
    def __init__(self, booking_id: UUID, slot_id: UUID, command: str, reason: str) -> None:
        self.booking_id = booking_id
        self.slot_id = slot_id
        self.command = command
        self.reason = reason
