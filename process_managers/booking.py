"""The booking process manager: reacts to events, records the saga's commands.

It follows consultations (requests, cancellations) and scheduling (holds, bookings,
refusals). It never reads another context's store: what it learns arrives as events,
and the registry is asked through ``RegistryPort``. Every reaction is idempotent and
every failure becomes an event (a rejection), never an exception that stops it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Notification

from domain.consultation import Consultation
from domain.metadata import event_metadata
from domain.slot import Slot, SlotRequestRefused, slot_id_for
from domain.values import RejectionReason
from process_managers.base import ClinicProcessApplication
from process_managers.booking_saga import BookingSaga, SagaState, saga_id_for
from process_managers.ports import Eligibility, RegistryPort, RegistryUnavailableError

DEFAULT_SAGA_TIMEOUT = timedelta(seconds=30)
_STARTED_TOPIC_SUFFIX = "BookingSaga.Started"
_CLOSED_TOPIC_SUFFIXES = ("BookingSaga.Completed", "BookingSaga.Rejected")


class BookingProcessManager(ClinicProcessApplication):
    """Runs one ``BookingSaga`` per requested consultation."""

    name = "Booking"
    registry: RegistryPort
    saga_timeout: timedelta = DEFAULT_SAGA_TIMEOUT

    def __init__(self, env: Any = None) -> None:
        super().__init__(env)
        self._deadlines: dict[UUID, tuple[datetime, str | None]] = {}
        self._deadlines_read_upto = 0

    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        """Ignore events the saga does not react to."""

    @policy.register
    def _(self, domain_event: Consultation.Requested, processing_event: ProcessingEvent) -> None:
        saga_id = saga_id_for(domain_event.originator_id)
        if saga_id in self.repository:
            return
        saga = BookingSaga(
            consultation_id=domain_event.originator_id,
            patient_id=domain_event.patient_id,
            doctor_id=domain_event.doctor_id,
            slot_id=slot_id_for(domain_event.doctor_id, domain_event.start),
            deadline=self.clock() + self.saga_timeout,
        )
        processing_event.collect_events(saga)

    @policy.register
    def _(self, domain_event: Slot.Held, processing_event: ProcessingEvent) -> None:
        saga = self._saga(domain_event.booking_id)
        if saga is None:
            return
        saga.record_slot_held()
        if saga.state == SagaState.VALIDATING:
            self._validate(saga)
        processing_event.collect_events(saga)

    @policy.register
    def _(self, domain_event: SlotRequestRefused.Recorded, processing_event: ProcessingEvent) -> None:
        saga = self._saga(domain_event.booking_id)
        if saga is not None:
            saga.reject(RejectionReason.SLOT_UNAVAILABLE)
            processing_event.collect_events(saga)

    @policy.register
    def _(self, domain_event: Slot.Booked, processing_event: ProcessingEvent) -> None:
        saga = self._saga(domain_event.booking_id)
        if saga is not None:
            saga.record_slot_booked()
            processing_event.collect_events(saga)

    @policy.register
    def _(self, domain_event: Consultation.CancelledByPatient, processing_event: ProcessingEvent) -> None:
        self._release_after_cancellation(domain_event, processing_event)

    @policy.register
    def _(self, domain_event: Consultation.CancelledByClinic, processing_event: ProcessingEvent) -> None:
        self._release_after_cancellation(domain_event, processing_event)

    def _release_after_cancellation(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        saga = self._saga(saga_id_for(domain_event.originator_id))
        if saga is not None:
            saga.release_after_cancellation("consultation_cancelled")
            processing_event.collect_events(saga)

    def _validate(self, saga: BookingSaga) -> None:
        try:
            eligibility = self.registry.booking_eligibility(saga.patient_id, saga.doctor_id)
        except RegistryUnavailableError:
            eligibility = Eligibility.refused(RejectionReason.REGISTRY_UNAVAILABLE)
        if eligibility.allowed:
            saga.record_registrants_valid()
        else:
            saga.reject(eligibility.reason or RejectionReason.PATIENT_NOT_ELIGIBLE)

    def _saga(self, saga_id: UUID) -> BookingSaga | None:
        try:
            return self.repository.get(saga_id)
        except AggregateNotFoundError:
            return None

    # Deadlines -----------------------------------------------------------------

    def time_out_overdue_sagas(self) -> list[UUID]:
        """Compensate every saga still open at its deadline; returns their ids.

        Holds the processing lock, so a timeout never races the policy on the same saga.
        """
        with self.processing_lock:
            self._read_deadlines()
            now = self.clock()
            overdue = [saga_id for saga_id, (deadline, _) in self._deadlines.items() if deadline <= now]
            for saga_id in overdue:
                self._time_out(saga_id, now)
            return overdue

    def _time_out(self, saga_id: UUID, now: datetime) -> None:
        deadline, correlation_id = self._deadlines.pop(saga_id)
        with event_metadata(correlation_id=correlation_id, causation_id=f"deadline:{deadline.isoformat()}",
                            actor=self.actor):
            saga = self.repository.get(saga_id)
            saga.time_out(now)
            self.save(saga)

    def _read_deadlines(self) -> None:
        """Catch the deadline index up with the saga log (rebuilt from it after a restart)."""
        for notification in self._new_saga_notifications():
            if notification.topic.endswith(_STARTED_TOPIC_SUFFIX):
                started = self.mapper.to_domain_event(notification)
                self._deadlines[started.originator_id] = (started.deadline, started.correlation_id)
            elif notification.topic.endswith(_CLOSED_TOPIC_SUFFIXES):
                self._deadlines.pop(notification.originator_id, None)

    def _new_saga_notifications(self) -> Iterator[Notification]:
        while batch := self.recorder.select_notifications(
            start=self._deadlines_read_upto, limit=1_000, inclusive_of_start=False
        ):
            yield from batch
            self._deadlines_read_upto = batch[-1].id
