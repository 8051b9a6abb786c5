"""The reschedule saga as data: moving a confirmed consultation to another start, one row per move.

Hold the new slot → validate patient and doctor → book the new slot → consultations records the
move → scheduling releases the old slot. Until consultations records the move the original booking
is untouched: a failure (a refused hold or booking, the registry's refusal, the deadline) releases the
new slot and consultations forgets the request; the consultation keeps its start and its slot.

Once the new slot is booked the saga waits in ``MOVING`` without a deadline: consultations always
answers (the move, or that the consultation changed meanwhile), and timing out there could release a
slot the consultation had just moved to. The same ``SagaTable`` as the booking saga's, so its
aggregate, its status read model and the timer read it the same way.
"""

from __future__ import annotations

from domain.booking_saga_table import (
    RELEASE,
    WAITING,
    Move,
    SagaState,
    SagaTable,
    StepStatus,
    _steps,
    cancellations,
    late_releases,
    rejections,
    taking_a_slot,
)

S, R = SagaState, StepStatus
FORGET = "consultations keeps the original booking (RescheduleFailed)"
CANCELLED_WHILE_OPEN = "Consultation.CancelledByPatient or CancelledByClinic before the move was recorded"

RESCHEDULE_SAGA = SagaTable("RescheduleSaga", (
    *taking_a_slot("Consultation.RescheduleRequested", hold="scheduling holds the new slot",
                   book="scheduling books the new slot"),
    Move(S.BOOKING_SLOT, "SlotBooked", S.MOVING,
         _steps(("book_slot", R.SUCCEEDED), ("move_consultation", R.REQUESTED)),
         cause="Slot.Booked", command="consultations moves the consultation to the new start"),
    Move(S.MOVING, "Completed", S.COMPLETED,
         _steps(("move_consultation", R.SUCCEEDED), ("release_old_slot", R.REQUESTED)),
         cause="Consultation.Rescheduled", command="scheduling releases the old slot"),
    *rejections("keep_original", FORGET),
    Move(S.MOVING, "Rejected", S.REJECTED,
         _steps(("move_consultation", R.FAILED), ("release_slot", R.REQUESTED)),
         cause="Consultation.RescheduleFailed (the consultation was completed or changed meanwhile)",
         compensation=RELEASE),
    *cancellations(CANCELLED_WHILE_OPEN, *WAITING, (S.MOVING, "move_consultation")),
    *late_releases("Consultation.CancelledByPatient or CancelledByClinic after the move"),
))
"""The reschedule saga's persisted state machine (``process_managers/reschedule_saga.py``)."""
