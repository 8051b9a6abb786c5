"""The booking process manager: reacts to events, records the saga's commands.

It follows consultations (requests, cancellations) and scheduling (holds, bookings,
refusals). It never reads another context's store: what it learns arrives as events,
and the registry is asked through ``RegistryPort``. Every reaction is idempotent and
every failure becomes an event (a rejection), never an exception that stops it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Notification, Recording

from domain.base import DomainError, NotFoundError
from domain.booking_saga_table import BOOKING_SAGA, SagaTable
from domain.consultation import Consultation
from domain.metadata import event_metadata
from domain.reschedule_saga_table import RESCHEDULE_SAGA
from domain.slot import Slot, SlotRequestRefused, slot_id_for
from domain.values import RejectionReason
from process_managers.base import ClinicProcessApplication, MapperFactory
from process_managers.booking_saga import SAGA_EVENT_BY_TOPIC, BookingSaga, SagaState, TableSaga, saga_id_for
from process_managers.ports import RegistryPort, RegistryUnavailableError
from process_managers.reschedule_saga import RESCHEDULE_EVENT_BY_TOPIC, RescheduleSaga
from process_managers.spans import saga_step, spans

DEFAULT_SAGA_TIMEOUT = timedelta(seconds=30)
TIMER_STEPS = {"deadline": "compensate", "validation-retry": "validate_registrants",
               "operator-retry": "validate_registrants", "operator-compensate": "compensate"}
"""The span of each step the timer takes (by the prefix of its cause)."""
TABLE_AND_EVENT_BY_TOPIC: dict[str, tuple[SagaTable, str]] = {
    **{topic: (BOOKING_SAGA, kind) for topic, kind in SAGA_EVENT_BY_TOPIC.items()},
    **{topic: (RESCHEDULE_SAGA, kind) for topic, kind in RESCHEDULE_EVENT_BY_TOPIC.items()},
}
"""Each stored saga topic's table and event name: the timer follows both sagas from one log."""
TIMEOUT_REASONS = frozenset({RejectionReason.DEADLINE_EXCEEDED.value, RejectionReason.VALIDATION_UNAVAILABLE.value})
"""The reasons ``BookingSaga.time_out`` rejects with: the deadline passed."""


class SagaStateError(DomainError):
    """The saga is not in a state the operator's action applies to."""


class SagaObserver(Protocol):
    """Told when a saga starts and how it ends, once its events are recorded (the metrics)."""

    def saga_started(self) -> None: ...

    def saga_confirmed(self, seconds: float) -> None: ...

    def saga_compensated(self, reason: str, seconds: float) -> None: ...

    def saga_timed_out(self) -> None: ...

    def saga_cancelled(self, seconds: float) -> None: ...

    def reschedule_ended(self, outcome: str) -> None: ...


class BookingProcessManager(ClinicProcessApplication):
    """Runs one ``BookingSaga`` per requested consultation, and one ``RescheduleSaga`` per reschedule.

    Scheduling's replies name the saga by ``booking_id``; both sagas answer them with the same
    methods, each by its own table."""

    name = "Booking"
    registry: RegistryPort
    saga_timeout: timedelta = DEFAULT_SAGA_TIMEOUT
    saga_observer: SagaObserver | None = None

    def __init__(self, env: Any = None, *, mapper_factory: MapperFactory | None = None) -> None:
        super().__init__(env, mapper_factory=mapper_factory)
        self._open: dict[UUID, OpenSaga] = {}
        self._read_upto = 0

    def aggregates_for(self, domain_event: Any) -> Iterable[UUID]:
        """The saga each event the policy handles loads (a batch loads them with one query)."""
        if isinstance(domain_event, Consultation.Requested):
            return (saga_id_for(domain_event.originator_id),)
        if isinstance(domain_event, (Slot.Held, Slot.Booked, SlotRequestRefused.Recorded)):
            return (domain_event.booking_id,)
        if isinstance(domain_event, (Consultation.RescheduleRequested, Consultation.Rescheduled,
                                     Consultation.RescheduleFailed)):
            return (domain_event.reschedule_id,)
        if isinstance(domain_event, (Consultation.CancelledByPatient, Consultation.CancelledByClinic)):
            return tuple(self._sagas_holding(domain_event))
        return ()

    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        """Ignore events the saga does not react to."""

    @policy.register
    @saga_step("hold_slot")
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
    @saga_step("validate_registrants")
    def _(self, domain_event: Slot.Held, processing_event: ProcessingEvent) -> None:
        saga = self._saga(domain_event.booking_id)
        if saga is None:
            return
        saga.record_slot_held()
        if saga.state == SagaState.VALIDATING:
            self._validate(saga)
        processing_event.collect_events(saga)

    @policy.register
    @saga_step("compensate")
    def _(self, domain_event: SlotRequestRefused.Recorded, processing_event: ProcessingEvent) -> None:
        saga = self._saga(domain_event.booking_id)
        if saga is not None:
            saga.reject(RejectionReason.SLOT_UNAVAILABLE)
            processing_event.collect_events(saga)

    @policy.register
    @saga_step("confirm")
    def _(self, domain_event: Slot.Booked, processing_event: ProcessingEvent) -> None:
        saga = self._saga(domain_event.booking_id)
        if saga is not None:
            saga.record_slot_booked()
            processing_event.collect_events(saga)

    @policy.register
    @saga_step("compensate")
    def _(self, domain_event: Consultation.CancelledByPatient, processing_event: ProcessingEvent) -> None:
        self._release_after_cancellation(domain_event, processing_event)

    @policy.register
    @saga_step("compensate")
    def _(self, domain_event: Consultation.CancelledByClinic, processing_event: ProcessingEvent) -> None:
        self._release_after_cancellation(domain_event, processing_event)

    def _release_after_cancellation(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        """The sagas that hold something of the consultation give it back: its booking's (or the last
        reschedule's, once one moved it) and the reschedule under way."""
        for saga_id in self._sagas_holding(domain_event):
            saga = self._saga(saga_id)
            if saga is not None:
                saga.release_after_cancellation("consultation_cancelled")
                processing_event.collect_events(saga)

    @staticmethod
    def _sagas_holding(cancellation: Any) -> list[UUID]:
        holder = cancellation.held_by or saga_id_for(cancellation.originator_id)
        return [holder] + ([cancellation.pending_reschedule] if cancellation.pending_reschedule else [])

    @policy.register
    @saga_step("hold_slot")
    def _(self, domain_event: Consultation.RescheduleRequested, processing_event: ProcessingEvent) -> None:
        consultation_id = domain_event.originator_id
        if domain_event.reschedule_id in self.repository:
            return
        saga = RescheduleSaga(
            consultation_id=consultation_id, request_version=domain_event.originator_version,
            patient_id=domain_event.patient_id,
            doctor_id=domain_event.doctor_id, slot_id=slot_id_for(domain_event.doctor_id, domain_event.start),
            start=domain_event.start, old_slot_id=slot_id_for(domain_event.doctor_id, domain_event.from_start),
            old_holder=domain_event.held_by or saga_id_for(consultation_id), deadline=self.clock() + self.saga_timeout,
        )
        processing_event.collect_events(saga)

    @policy.register
    @saga_step("release_old_slot")
    def _(self, domain_event: Consultation.Rescheduled, processing_event: ProcessingEvent) -> None:
        saga = self._reschedule_of(domain_event)
        if saga is not None:
            saga.record_moved()
            processing_event.collect_events(saga)

    @policy.register
    @saga_step("compensate")
    def _(self, domain_event: Consultation.RescheduleFailed, processing_event: ProcessingEvent) -> None:
        saga = self._reschedule_of(domain_event)
        if saga is not None:
            saga.record_move_refused()
            processing_event.collect_events(saga)

    def _reschedule_of(self, domain_event: Any) -> RescheduleSaga | None:
        saga = self._saga(domain_event.reschedule_id)
        return saga if isinstance(saga, RescheduleSaga) else None

    def _validate(self, saga: TableSaga) -> None:
        """Ask the registry; "unavailable" is recorded and retried until the deadline."""
        try:
            eligibility = self.registry.booking_eligibility(saga.patient_id, saga.doctor_id)
        except RegistryUnavailableError as error:
            retry_at = self.clock() + validation_retry_delay(saga.validation_attempts + 1)
            saga.record_validation_unavailable(str(error) or type(error).__name__, retry_at)
            return
        if eligibility.allowed:
            saga.record_registrants_valid()
        else:
            saga.reject(eligibility.reason or RejectionReason.PATIENT_NOT_ELIGIBLE)

    def _saga(self, saga_id: UUID) -> TableSaga | None:
        try:
            return self.repository.get(saga_id)
        except AggregateNotFoundError:
            return None

    def _record(self, processing_event: ProcessingEvent) -> list[Recording]:
        """Record, then tell ``saga_observer`` of the sagas started and ended (only once committed)."""
        recordings = super()._record(processing_event)
        if self.saga_observer is not None:
            observe_sagas(self.saga_observer, processing_event)
        return recordings

    # Deadlines and deferred validations -----------------------------------------

    def tick(self) -> datetime | None:
        """Run by the runner or worker on a timer: compensate overdue sagas, retry validations. Returns
        when the timer is next due (the earliest deadline or retry of an open saga; ``None``: none open)."""
        self.time_out_overdue_sagas()
        self.retry_deferred_validations()
        return self.next_due()

    def next_due(self) -> datetime | None:
        """The earliest deadline or validation retry of the open sagas known (``None``: none open)."""
        with self.processing_lock:
            moments = [moment for s in self._open.values() for moment in (s.deadline, s.retry_at) if moment is not None]
        return min(moments, default=None)

    def time_out_overdue_sagas(self) -> list[UUID]:
        """Compensate every saga still open at its deadline; returns their ids.

        Holds the processing lock, so a timeout never races the policy on the same saga.
        """
        with self.processing_lock:
            self._catch_up_open_sagas()
            now = self.clock()
            overdue = [saga_id for saga_id, open_saga in self._open.items() if open_saga.deadline <= now]
            for saga_id in overdue:
                self._under(self._open.pop(saga_id), f"deadline:{saga_id}", lambda saga: saga.time_out(now))
            return overdue

    def retry_deferred_validations(self) -> list[UUID]:
        """Ask the registry again for sagas whose validation was unavailable and is due."""
        with self.processing_lock:
            self._catch_up_open_sagas()
            now = self.clock()
            due = [saga_id for saga_id, s in self._open.items() if s.retry_at is not None and s.retry_at <= now]
            for saga_id in due:
                self._under(self._open[saga_id], f"validation-retry:{saga_id}", self._validate)
            return due

    # Operators ------------------------------------------------------------------

    def retry_validation_now(self, saga_id: UUID, operator: str) -> None:
        """Ask the registry again at once for a saga waiting on it (``operator`` is recorded as the actor)."""
        with self.processing_lock:
            self._catch_up_open_sagas()
            open_saga = self._open.get(self._existing(saga_id))
            if open_saga is None or open_saga.retry_at is None:
                raise SagaStateError(f"saga {saga_id} is not waiting on the registry")
            self._under(open_saga, f"operator-retry:{saga_id}", self._validate, actor=operator)

    def compensate_now(self, saga_id: UUID, operator: str) -> None:
        """Compensate a saga still waiting under its deadline, at once, as its deadline would: the slot it
        holds is released and the consultation rejected ``compensated_by_operator``."""

        def compensate(saga: TableSaga) -> None:
            if not saga.is_open:
                raise SagaStateError(f"saga {saga_id} is {saga.state}: only a saga waiting under its deadline "
                                     "can be compensated")
            saga.reject(RejectionReason.COMPENSATED_BY_OPERATOR)

        with self.processing_lock:
            self._catch_up_open_sagas()
            open_saga = self._open.get(self._existing(saga_id))
            if open_saga is None:
                raise SagaStateError(f"saga {saga_id} has ended: there is nothing to compensate")
            self._under(open_saga, f"operator-compensate:{saga_id}", compensate, actor=operator)
            self._open.pop(saga_id, None)

    def _existing(self, saga_id: UUID) -> UUID:
        if self._saga(saga_id) is None:
            raise NotFoundError(f"saga {saga_id} not found")
        return saga_id

    def _under(self, open_saga: OpenSaga, cause: str, action: Callable[[TableSaga], None],
               actor: str | None = None) -> None:
        """Act on a saga outside any event, stamped with its booking's correlation id, in its trace (the actor:
        this service, or the operator who asked)."""
        with spans().saga(TIMER_STEPS[cause.partition(":")[0]], open_saga.traceparent) as span, event_metadata(
                correlation_id=open_saga.correlation_id, causation_id=cause, actor=actor or self.actor,
                traceparent=spans().current_traceparent()):
            saga = self.repository.get(open_saga.saga_id)
            action(saga)
            span.describe_sagas([saga])
            self.save(saga)

    def _catch_up_open_sagas(self) -> None:
        """Keep the index of open sagas up with the saga log (rebuilt from it after a restart)."""
        for notification in self._new_saga_notifications():
            table, kind = TABLE_AND_EVENT_BY_TOPIC.get(notification.topic, (None, ""))
            if table is None:
                continue
            if table.starts(kind):
                started = self.mapper.to_domain_event(notification)
                self._open[started.originator_id] = OpenSaga(started.originator_id, started.deadline,
                                                             started.correlation_id, traceparent=started.traceparent)
            elif (open_saga := self._open.get(notification.originator_id)) is None:
                continue
            elif table.ends(kind):
                del self._open[notification.originator_id]
            elif table.schedules_retry(kind):
                open_saga.retry_at = self.mapper.to_domain_event(notification).retry_at
            elif table.clears_retry(kind):
                open_saga.retry_at = None

    def _new_saga_notifications(self) -> Iterator[Notification]:
        while batch := self.recorder.select_notifications(
            start=self._read_upto, limit=1_000, inclusive_of_start=False
        ):
            yield from batch
            self._read_upto = batch[-1].id


@dataclass
class OpenSaga:
    """What the timer needs to know of a saga that has not finished."""

    saga_id: UUID
    deadline: datetime
    correlation_id: str | None
    retry_at: datetime | None = None
    traceparent: str | None = None
    """The trace the saga started in: the timer's steps continue it."""


def observe_sagas(observer: SagaObserver, processing_event: ProcessingEvent) -> None:
    """Starts and ends among the recorded events; a saga's duration runs from its start event."""
    for event in processing_event.events:
        if (outcome := RESCHEDULE_OUTCOME.get(type(event))) is not None:
            observer.reschedule_ended(outcome)
        elif isinstance(event, BookingSaga.Started):
            observer.saga_started()
        elif isinstance(event, (BookingSaga.Completed, BookingSaga.Rejected, BookingSaga.Cancelled)):
            saga = processing_event.aggregates.get(event.originator_id)
            seconds = (event.timestamp - saga.created_on).total_seconds() if saga is not None else 0.0
            if isinstance(event, BookingSaga.Completed):
                observer.saga_confirmed(seconds)
                continue
            if isinstance(event, BookingSaga.Cancelled):
                observer.saga_cancelled(seconds)
                continue
            observer.saga_compensated(event.reason, seconds)
            if event.reason in TIMEOUT_REASONS:
                observer.saga_timed_out()


RESCHEDULE_OUTCOME: dict[type, str] = {RescheduleSaga.Completed: "moved", RescheduleSaga.Rejected: "failed",
                                       RescheduleSaga.Cancelled: "cancelled"}
"""How each reschedule saga's end is counted."""


def validation_retry_delay(attempts: int) -> timedelta:
    """Back off 1 s, 2 s, 4 s … up to 10 s between attempts to reach the registry."""
    return timedelta(seconds=min(2 ** max(attempts - 1, 0), 10))
