"""The use cases the interfaces call, over the contexts this process hosts.

Embedded mode hosts every context and their runner; a service of distributed mode
hosts one context, and the interfaces mount only that context's routes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder

from application.audit import Auditor
from application.common import load
from application.consultations import ConsultationsApplication
from application.contexts import CONTEXTS
from application.idempotency import IdempotencyKey, all_created, created, nothing, once
from application.notifications import NotificationsApplication
from application.read_model_desk import ReadModelDesk
from application.read_models import ReadModels
from application.readiness import Check, Readiness
from application.record_access import PatientRecords
from application.registry import RegistryApplication
from application.runner import EmbeddedRunner
from application.scheduling import SchedulingApplication
from application.views import AuditTrail, BookingAccepted, Saga, SagaStep
from domain.availability import WeeklyAvailability
from infrastructure.event_store import storage_backend
from process_managers.booking import BookingProcessManager
from process_managers.booking_saga import TableSaga, saga_id_for

Part = TypeVar("Part")


READ_MODELS_CHECK = "redis"
"""The readiness check of the read models' store: derived state, so failing it degrades, never unreadies."""


class NotHostedError(RuntimeError):
    """A use case asked for a context (or the read side) this process does not host: a route or command
    mounted on the wrong service."""


class Log(Protocol):
    """A context application as a log: what ``Clinic.position`` reads."""

    @property
    def name(self) -> str: ...

    @property
    def recorder(self) -> ApplicationRecorder: ...

    def saved_position(self) -> int | None: ...


class Clinic:
    """Book, cancel, read and audit consultations; register people; open slots."""

    @classmethod
    def hosting(cls, apps: Mapping[str, Any], **parts: Any) -> Clinic:
        """A Clinic of the contexts' applications in ``apps`` (by application name: all of them embedded,
        one in a service), with the other ``parts`` (runner, auditor, checks, read models)."""
        return cls(**{context.service: apps[context.name] for context in CONTEXTS if context.name in apps}, **parts)

    def __init__(self, registry: RegistryApplication | None = None, scheduling: SchedulingApplication | None = None,
                 consultations: ConsultationsApplication | None = None, booking: BookingProcessManager | None = None,
                 notifications: NotificationsApplication | None = None, runner: EmbeddedRunner | None = None, auditor: Auditor | None = None,
                 checks: dict[str, Callable[[], bool]] | None = None, read_models: ReadModels | None = None,
                 read_model_desk: ReadModelDesk | None = None) -> None:
        self.registry = registry
        self.scheduling = scheduling
        self.consultations = consultations
        self.booking = booking
        self.notifications = notifications
        self.runner = runner
        self.auditor = auditor or Auditor({})
        self.read_models = read_models
        """The read side (projections' views); ``None`` in a service that serves no queries."""
        self.read_model_desk = read_model_desk
        """The read models' status and rebuilds, where this process keeps the views (embedded, projections)."""
        self.patient_records = PatientRecords(registry) if registry is not None else None
        """Reads of patient records, each recorded in the patient's access log."""
        self.checks = dict(checks or {})
        """Extra readiness checks by dependency (``redis``, ``rabbitmq``, ``accepting``), added by the composition root."""
        self.readiness = Readiness(self.readiness_checks, degradable=lambda: {READ_MODELS_CHECK})
        """The readiness probe over :meth:`readiness_checks`: concurrent, each bounded to 0.8 s, kept 1 s; the
        read models' store only degrades it (queries answer 503, commands are served)."""

    def open_slots(self, doctor_id: UUID, slots: Sequence[tuple[datetime, int]],
                   key: IdempotencyKey | None = None) -> list[UUID]:
        """Open a doctor's slots, all or none; checks the doctor when the registry is hosted here. Under a
        ``key`` used before, the slots that request opened."""
        if self.registry is not None:
            self.registry.doctor(doctor_id)
        scheduling = self.require(SchedulingApplication)
        return once(scheduling, key, lambda: scheduling.open_slots(doctor_id, slots), all_created)

    def open_availability(self, doctor_id: UUID, availability: WeeklyAvailability,
                          key: IdempotencyKey | None = None) -> tuple[list[UUID], int]:
        """Open a doctor's recurring slots not yet open; checks the doctor when the registry is hosted here.
        Returns the slots opened and how many of the recurrence's were open already."""
        if self.registry is not None:
            self.registry.doctor(doctor_id)
        scheduling = self.require(SchedulingApplication)
        wanted = len(availability.starts())
        opened = once(scheduling, key, lambda: scheduling.open_availability(doctor_id, availability)[0], all_created)
        return opened, wanted - len(opened)

    def book(self, patient_id: UUID, doctor_id: UUID, start: datetime, reason: str,
             key: IdempotencyKey | None = None) -> BookingAccepted:
        """Request a consultation; the booking saga confirms or rejects it. Under a ``key`` used before,
        the consultation that request created."""
        consultations = self.require(ConsultationsApplication)
        consultation_id = once(consultations, key, lambda: consultations.request_consultation(
            patient_id, doctor_id, start, reason), created)
        return BookingAccepted(consultation_id, saga_id_for(consultation_id), "REQUESTED")

    def audit(self, kind: str, aggregate_id: UUID, reader: str, roles: Iterable[str], operation: str,
              version: int | None = None, as_of: datetime | None = None) -> AuditTrail:
        """An aggregate rebuilt from its stream alone, at a version or a moment, with its history. Auditing a
        patient reads their personal data: the read is recorded in their access log (``reader`` doing
        ``operation``), wherever this process hosts the registry."""
        trail = self.auditor.trail(kind, aggregate_id, version=version, as_of=as_of)
        if kind == "patient" and self.patient_records is not None:
            self.patient_records.record_read(aggregate_id, reader, roles, operation)
        return trail

    def saga(self, saga_id: UUID) -> Saga:
        """A booking or reschedule saga's state and steps, as operators follow it."""
        saga = load(self.require(BookingProcessManager), saga_id, TableSaga, "saga")
        steps = [SagaStep(s.name, s.status, s.at) for s in saga.steps]
        return Saga(saga.id, saga.consultation_id, str(saga.state), saga.rejection_reason, saga.deadline, steps)

    def retry_saga_validation(self, saga_id: UUID, operator: str, key: IdempotencyKey | None = None) -> None:
        """Ask the registry again, now, for a saga waiting on it; ``operator`` is recorded as the actor."""
        booking = self.require(BookingProcessManager)
        once(booking, key, lambda: booking.retry_validation_now(saga_id, operator), nothing)

    def compensate_saga(self, saga_id: UUID, operator: str, key: IdempotencyKey | None = None) -> None:
        """Compensate, now, a saga waiting under its deadline; ``operator`` is recorded as the actor."""
        booking = self.require(BookingProcessManager)
        once(booking, key, lambda: booking.compensate_now(saga_id, operator), nothing)

    def position(self, app: Log) -> str:
        """Where ``app``'s log stands after this thread's last command: its events are at or before it
        (read-your-writes). The position of the command's own last event if it recorded any, else the head."""
        position = app.saved_position()
        return f"{app.name}:{position if position is not None else app.recorder.max_notification_id() or 0}"

    def wait_until_settled(self, timeout: float = 10.0) -> None:
        """Block until every recorded event has been processed by its followers (embedded mode)."""
        if self.runner is None:
            raise NotHostedError(f"the embedded runner is not hosted by the {self.service} service")
        self.runner.wait_until_idle(timeout)

    def require(self, part: type[Part]) -> Part:
        """The hosted part of type ``part``: a context's application, ``ReadModels``, ``ReadModelDesk`` or
        ``PatientRecords``.

        Raises ``NotHostedError`` naming the part and this service when the process does not host it.
        """
        hosted = (*self.apps(), self.read_models, self.read_model_desk, self.patient_records)
        for candidate in hosted:
            if isinstance(candidate, part):
                return candidate
        raise NotHostedError(f"{part.__name__} is not hosted by the {self.service} service")

    @property
    def service(self) -> str:
        """The service this process is: ``embedded`` when it hosts every context, else its contexts' services."""
        hosted = [context.service for context in CONTEXTS if getattr(self, context.service) is not None]
        if len(hosted) == len(CONTEXTS):
            return "embedded"
        return "+".join(hosted) or "no-context"

    def readiness_checks(self) -> dict[str, Check]:
        """What this process needs to serve: its event store(s), the runner, and the composition root's checks.

        The event store check is named after its backend (``postgres``, ``sqlite``, ``sqlalchemy``,
        ``memory``): every hosted context's store must answer a query.
        """
        stores: dict[str, list[Any]] = {}
        for app in self.apps():
            stores.setdefault(storage_backend(app.factory), []).append(app)
        checks: dict[str, Check] = {kind: _stores_answer(apps) for kind, apps in stores.items()}
        runner = self.runner
        if runner is not None:
            checks["runner"] = lambda: runner.is_alive and runner.last_error is None
        return checks | self.checks

    def close(self) -> None:
        if self.runner is not None:
            self.runner.stop()
        if self.read_models is not None:
            self.read_models.close()
        for app in self.apps():
            app.close()

    def apps(self) -> list[Any]:
        """The contexts' applications hosted by this process."""
        hosted = [self.registry, self.scheduling, self.consultations, self.booking, self.notifications]
        return [app for app in hosted if app is not None]


def _stores_answer(apps: list[Any]) -> Check:
    def check() -> bool:
        for app in apps:
            app.recorder.max_notification_id()  # raises when the store cannot answer
        return True

    return check
