"""The reschedule saga's persisted state machine: a confirmed consultation moves to another start.

Its moves are the rows of ``domain.reschedule_saga_table.RESCHEDULE_SAGA``. Its events are the
commands other contexts follow: ``Started`` asks scheduling to hold the new slot,
``RegistrantsValidated`` to book it, ``SlotBooked`` asks consultations to record the move,
``Completed`` asks scheduling to release the old slot (held by ``old_holder``), ``Rejected`` asks
consultations to keep the original booking and scheduling to release a held new slot, ``Cancelled``
and ``SlotReleaseRequested`` give the new slot back.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import event
from eventsourcing.utils import get_topic

from domain.base import ClinicAggregate
from domain.booking_saga_table import SagaState
from domain.consultation import reschedule_id_for
from domain.reschedule_saga_table import RESCHEDULE_SAGA
from process_managers.booking_saga import (
    CancelledMove,
    RegistrantsValidatedMove,
    RejectedMove,
    SagaMove,
    SlotReleaseRequestedMove,
    TableSaga,
    ValidationUnavailableMove,
)

reschedule_saga_id_for = reschedule_id_for
"""The saga of the reschedule asked at a version of the consultation (stated once, by the consultation)."""


class RescheduleSaga(TableSaga):
    """Moves one confirmed consultation: hold the new slot → validate → book it → move → release the old."""

    table = RESCHEDULE_SAGA

    class Started(ClinicAggregate.Created):
        consultation_id: UUID
        request_version: int
        """The version of the consultation's ``RescheduleRequested``: the saga's id is derived from it."""
        patient_id: UUID
        doctor_id: UUID
        slot_id: UUID
        """The new slot."""
        start: datetime
        """The new start."""
        old_slot_id: UUID
        old_holder: UUID
        """The saga whose booking holds the old slot (the booking saga, or an earlier reschedule's)."""
        deadline: datetime

    class SlotHeld(SagaMove):
        pass

    class ValidationUnavailable(ValidationUnavailableMove):
        pass

    class RegistrantsValidated(RegistrantsValidatedMove):
        pass

    class SlotBooked(SagaMove):
        consultation_id: UUID
        start: datetime

    class Completed(SagaMove):
        old_slot_id: UUID
        old_holder: UUID

    class Rejected(RejectedMove):
        pass

    class Cancelled(CancelledMove):
        pass

    class SlotReleaseRequested(SlotReleaseRequestedMove):
        pass

    @staticmethod
    def create_id(consultation_id: UUID, request_version: int, patient_id: UUID, doctor_id: UUID, slot_id: UUID,
                  start: datetime, old_slot_id: UUID, old_holder: UUID, deadline: datetime) -> UUID:
        return reschedule_saga_id_for(consultation_id, request_version)

    @event(Started)
    def __init__(self, consultation_id: UUID, request_version: int, patient_id: UUID, doctor_id: UUID,
                 slot_id: UUID, start: datetime, old_slot_id: UUID, old_holder: UUID, deadline: datetime) -> None:
        self.consultation_id = consultation_id
        self.request_version = request_version
        self.patient_id = patient_id
        self.doctor_id = doctor_id
        self.slot_id = slot_id
        self.start = start
        self.old_slot_id = old_slot_id
        self.old_holder = old_holder
        self.deadline = deadline
        self._start()

    def record_slot_booked(self) -> None:
        """The new slot is booked: consultations records the move."""
        self._record(RescheduleSaga.SlotBooked, consultation_id=self.consultation_id, start=self.start)

    def record_moved(self) -> None:
        """Consultations recorded the move: scheduling releases the old slot."""
        self._record(RescheduleSaga.Completed, old_slot_id=self.old_slot_id, old_holder=self.old_holder)

    def record_move_refused(self) -> None:
        """Consultations could not move it (completed or changed meanwhile): give the new slot back."""
        if self.state == SagaState.MOVING:
            self.reject("consultation_changed")


RESCHEDULE_EVENT_BY_TOPIC: dict[str, str] = {get_topic(getattr(RescheduleSaga, kind)): kind
                                             for kind in RESCHEDULE_SAGA.events}
"""The table's event name of each stored reschedule saga topic."""
