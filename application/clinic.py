"""The use cases the interfaces call, over the contexts this process hosts.

Embedded mode hosts all four contexts and their runner; a service of distributed mode
hosts one context, and the interfaces mount only that context's routes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.audit import Auditor
from application.consultations import ConsultationsApplication
from application.read_models import ReadModels
from application.readiness import Check, Readiness
from application.record_access import PatientRecords
from application.registry import RegistryApplication
from application.runner import EmbeddedRunner
from application.scheduling import SchedulingApplication
from application.views import BookingAccepted, SagaStepView, SagaView
from domain.base import NotFoundError
from infrastructure.event_store import storage_backend
from process_managers.booking import BookingProcessManager
from process_managers.booking_saga import saga_id_for


class Clinic:
    """Book, cancel, read and audit consultations; register people; open slots."""

    def __init__(self, registry: RegistryApplication | None = None, scheduling: SchedulingApplication | None = None,
                 consultations: ConsultationsApplication | None = None, booking: BookingProcessManager | None = None,
                 runner: EmbeddedRunner | None = None, auditor: Auditor | None = None,
                 checks: dict[str, Callable[[], bool]] | None = None, read_models: ReadModels | None = None) -> None:
        self.registry = registry
        self.scheduling = scheduling
        self.consultations = consultations
        self.booking = booking
        self.runner = runner
        self.auditor = auditor or Auditor({})
        self.read_models = read_models
        """The read side (projections' views); ``None`` in a service that serves no queries."""
        self.patient_records = PatientRecords(registry) if registry is not None else None
        """Reads of patient records, each recorded in the patient's access log."""
        self.checks = dict(checks or {})
        """Extra readiness checks by dependency (``redis``, ``rabbitmq``, ``accepting``), added by the composition root."""
        self.readiness = Readiness(self.readiness_checks)
        """The readiness probe over :meth:`readiness_checks`: concurrent, each bounded to 1 s, cached 1 s."""

    def open_slots(self, doctor_id: UUID, slots: Sequence[tuple[datetime, int]]) -> list[UUID]:
        """Open a doctor's slots, all or none; checks the doctor when the registry is hosted here."""
        if self.registry is not None:
            self.registry.doctor(doctor_id)
        return self.scheduling.open_slots(doctor_id, slots)

    def book(self, patient_id: UUID, doctor_id: UUID, start: datetime, reason: str) -> BookingAccepted:
        """Request a consultation; the booking saga confirms or rejects it."""
        consultation_id = self.consultations.request_consultation(patient_id, doctor_id, start, reason)
        return BookingAccepted(consultation_id, saga_id_for(consultation_id), "REQUESTED")

    def saga(self, saga_id: UUID) -> SagaView:
        """The booking saga's state and steps, as operators follow it."""
        try:
            saga = self.booking.repository.get(saga_id)
        except AggregateNotFoundError:
            raise NotFoundError(f"saga {saga_id} not found") from None
        steps = [SagaStepView(s.name, s.status, s.at) for s in saga.steps]
        return SagaView(saga.id, saga.consultation_id, str(saga.state), saga.rejection_reason,
                        saga.deadline, steps)

    def position(self, app: Any) -> str:
        """Where ``app``'s log stands after this thread's last command: its events are at or before it
        (read-your-writes). The position of the command's own last event if it recorded any, else the head."""
        position = app.saved_position()
        return f"{app.name}:{position if position is not None else app.recorder.max_notification_id() or 0}"

    def wait_until_settled(self, timeout: float = 10.0) -> None:
        """Block until every recorded event has been processed by its followers (embedded mode)."""
        self.runner.wait_until_idle(timeout)

    def readiness_checks(self) -> dict[str, Check]:
        """What this process needs to serve: its event store(s), the runner, and the composition root's checks.

        The event store check is named after its backend (``postgres``, ``sqlite``, ``sqlalchemy``,
        ``memory``): every hosted context's store must answer a query.
        """
        stores: dict[str, list[Any]] = {}
        for app in self.apps():
            stores.setdefault(storage_backend(app.factory), []).append(app)
        checks: dict[str, Check] = {kind: _stores_answer(apps) for kind, apps in stores.items()}
        if self.runner is not None:
            checks["runner"] = lambda: self.runner.is_alive and self.runner.last_error is None
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
        hosted = [self.registry, self.scheduling, self.consultations, self.booking]
        return [app for app in hosted if app is not None]


def _stores_answer(apps: list[Any]) -> Check:
    def check() -> bool:
        for app in apps:
            app.recorder.max_notification_id()  # raises when the store cannot answer
        return True

    return check
