"""The scheduling context: doctors' slots, held, booked and released on the sagas' commands."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import ProcessingEvent
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import IntegrityError

from application.common import load
from application.views import SlotView
from domain.availability import WeeklyAvailability
from domain.base import DomainError, NotFoundError
from domain.slot import Slot, SlotRequestRefused, slot_id_for
from process_managers.base import ClinicProcessApplication
from process_managers.booking_saga import BookingSaga
from process_managers.reschedule_saga import RescheduleSaga


class SlotAlreadyOpenError(DomainError):
    """A slot for this doctor at this start already exists."""


class SchedulingApplication(ClinicProcessApplication):
    """Opens and closes slots; holds, books and releases them for bookings."""

    name = "Scheduling"

    def open_slots(self, doctor_id: UUID, slots: Sequence[tuple[datetime, int]]) -> list[UUID]:
        """Open all the slots or none; an existing one is ``SlotAlreadyOpenError``."""
        opened = [Slot(doctor_id=doctor_id, start=start, duration_minutes=minutes) for start, minutes in slots]
        if len({slot.id for slot in opened}) != len(opened):
            raise SlotAlreadyOpenError("the same start is given twice")
        try:
            self.save(*opened)
        except IntegrityError:
            raise SlotAlreadyOpenError("a slot at one of these starts is already open") from None
        return [slot.id for slot in opened]

    def open_availability(self, doctor_id: UUID, availability: WeeklyAvailability) -> tuple[list[UUID], int]:
        """Open the recurrence's slots that are not open yet, all or none; returns the ones opened and how
        many were there already (so asking again opens nothing and succeeds)."""
        minutes = availability.slot_minutes
        wanted = [(start, slot_id_for(doctor_id, start)) for start in availability.starts()]
        missing = [start for start, slot_id in wanted if slot_id not in self.repository]
        opened = self.open_slots(doctor_id, [(start, minutes) for start in missing]) if missing else []
        return opened, len(wanted) - len(missing)

    def close_slot(self, slot_id: UUID, doctor_id: UUID | None = None) -> None:
        """Withdraw an open slot from booking (of ``doctor_id`` only, if given); a held or booked one is
        ``SlotInUseError``."""
        slot = self._slot_of(slot_id, doctor_id)
        slot.close()
        self.save(slot)

    def reopen_slot(self, slot_id: UUID, doctor_id: UUID | None = None) -> None:
        """Offer a closed slot for booking again (of ``doctor_id`` only, if given)."""
        slot = self._slot_of(slot_id, doctor_id)
        slot.reopen()
        self.save(slot)

    def _slot_of(self, slot_id: UUID, doctor_id: UUID | None) -> Slot:
        slot = load(self, slot_id, Slot, "slot")
        if doctor_id is not None and slot.doctor_id != doctor_id:
            raise NotFoundError(f"slot {slot_id} not found for doctor {doctor_id}")
        return slot

    def slot(self, slot_id: UUID) -> SlotView:
        s = load(self, slot_id, Slot, "slot")
        return SlotView(s.id, s.doctor_id, s.start, s.duration_minutes, str(s.status), s.booking_id)

    def aggregates_for(self, domain_event: Any) -> Iterable[UUID]:
        """The slot each saga command the policy handles loads (a batch loads them with one query)."""
        if isinstance(domain_event, RescheduleSaga.Completed):
            return (domain_event.old_slot_id,)
        commands = (BookingSaga.Started, BookingSaga.RegistrantsValidated, BookingSaga.Rejected,
                    BookingSaga.Cancelled, BookingSaga.SlotReleaseRequested, RescheduleSaga.Started,
                    RescheduleSaga.RegistrantsValidated, RescheduleSaga.Rejected, RescheduleSaga.Cancelled,
                    RescheduleSaga.SlotReleaseRequested)
        return (domain_event.slot_id,) if isinstance(domain_event, commands) else ()

    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        """Ignore events scheduling does not react to."""

    @policy.register
    def _(self, domain_event: BookingSaga.Started | RescheduleSaga.Started, processing_event: ProcessingEvent) -> None:
        now = self.clock()
        self._attempt(domain_event, "hold", processing_event, lambda slot, booking_id: slot.hold(
            booking_id, expires_at=domain_event.deadline, now=now))

    @policy.register
    def _(self, domain_event: BookingSaga.RegistrantsValidated | RescheduleSaga.RegistrantsValidated,
          processing_event: ProcessingEvent) -> None:
        self._attempt(domain_event, "book", processing_event, lambda slot, booking_id: slot.book(booking_id))

    @policy.register
    def _(self, domain_event: RescheduleSaga.Completed, processing_event: ProcessingEvent) -> None:
        """The consultation moved: its old slot is given back by the saga that held it."""
        slot = self._slot_or_none(domain_event.old_slot_id)
        if slot is not None:
            slot.release(domain_event.old_holder, "rescheduled")
            processing_event.collect_events(slot)

    def _attempt(self, command: Any, name: str, processing_event: ProcessingEvent,
                 action: Callable[[Slot, UUID], None]) -> None:
        """Apply the saga's command to its slot, or record why scheduling refused it."""
        booking_id, slot_id = command.originator_id, command.slot_id
        slot = self._slot_or_none(slot_id)
        try:
            if slot is None:
                raise DomainError("no slot is open at this start")
            action(slot, booking_id)
        except DomainError as refusal:
            processing_event.collect_events(
                SlotRequestRefused(booking_id=booking_id, slot_id=slot_id, command=name, reason=str(refusal))
            )
            return
        processing_event.collect_events(slot)

    @policy.register
    def _(self, domain_event: BookingSaga.Rejected | RescheduleSaga.Rejected, processing_event: ProcessingEvent) -> None:
        if domain_event.release_slot:
            self._release(domain_event, processing_event)

    @policy.register
    def _(self, domain_event: BookingSaga.Cancelled | RescheduleSaga.Cancelled, processing_event: ProcessingEvent) -> None:
        self._release(domain_event, processing_event)

    @policy.register
    def _(self, domain_event: BookingSaga.SlotReleaseRequested | RescheduleSaga.SlotReleaseRequested,
          processing_event: ProcessingEvent) -> None:
        self._release(domain_event, processing_event)

    def _release(self, command: Any, processing_event: ProcessingEvent) -> None:
        slot = self._slot_or_none(command.slot_id)
        if slot is not None:
            slot.release(command.originator_id, command.reason)
            processing_event.collect_events(slot)

    def _slot_or_none(self, slot_id: UUID) -> Slot | None:
        try:
            return load(self, slot_id, Slot, "slot")
        except DomainError:
            return None
