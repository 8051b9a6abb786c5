"""The use cases the interfaces call, over the four contexts and their runner."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.audit import Auditor
from application.consultations import ConsultationsApplication
from application.registry import RegistryApplication
from application.runner import EmbeddedRunner
from application.scheduling import SchedulingApplication
from application.views import BookingAccepted, SagaStepView, SagaView
from domain.base import NotFoundError
from process_managers.booking import BookingProcessManager
from process_managers.booking_saga import saga_id_for


class Clinic:
    """Book, cancel, read and audit consultations; register people; open slots."""

    def __init__(self, registry: RegistryApplication, scheduling: SchedulingApplication,
                 consultations: ConsultationsApplication, booking: BookingProcessManager,
                 runner: EmbeddedRunner, auditor: Auditor) -> None:
        self.registry = registry
        self.scheduling = scheduling
        self.consultations = consultations
        self.booking = booking
        self.runner = runner
        self.auditor = auditor

    def open_slots(self, doctor_id: UUID, slots: Sequence[tuple[datetime, int]]) -> list[UUID]:
        """Open a registered doctor's slots, all or none."""
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

    def wait_until_settled(self, timeout: float = 10.0) -> None:
        """Block until every recorded event has been processed by its followers."""
        self.runner.wait_until_idle(timeout)

    def readiness(self) -> dict[str, bool]:
        """Whether each event store answers and the runner is alive."""
        checks = {app.name.lower(): _store_answers(app) for app in self._apps()}
        checks["runner"] = self.runner.is_alive and self.runner.last_error is None
        return checks

    def close(self) -> None:
        self.runner.stop()
        for app in self._apps():
            app.close()

    def _apps(self) -> list[Any]:
        return [self.registry, self.scheduling, self.consultations, self.booking]


def _store_answers(app: Any) -> bool:
    try:
        app.recorder.max_notification_id()
    except Exception:  # noqa: BLE001 - any failure means not ready
        return False
    return True
