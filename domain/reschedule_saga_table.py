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

from domain.booking_saga_table import RELEASE, Move, SagaState, SagaTable, StepStatus, _steps

S, R = SagaState, StepStatus
FORGET = "consultations keeps the original booking (RescheduleFailed)"
CANCELLED_WHILE_OPEN = "Consultation.CancelledByPatient or CancelledByClinic before the move was recorded"

RESCHEDULE_SAGA = SagaTable("RescheduleSaga", (
    Move(None, "Started", S.HOLDING_SLOT, _steps(("hold_slot", R.REQUESTED)),
         cause="Consultation.RescheduleRequested", command="scheduling holds the new slot"),
    Move(S.HOLDING_SLOT, "SlotHeld", S.VALIDATING,
         _steps(("hold_slot", R.SUCCEEDED), ("validate_registrants", R.REQUESTED)),
         cause="Slot.Held"),
    Move(S.VALIDATING, "ValidationUnavailable", S.VALIDATING, _steps(("validate_registrants", R.UNAVAILABLE)),
         cause="the registry did not answer", schedules_retry=True),
    Move(S.VALIDATING, "RegistrantsValidated", S.BOOKING_SLOT,
         _steps(("validate_registrants", R.SUCCEEDED), ("book_slot", R.REQUESTED)),
         cause="the registry found patient and doctor eligible", command="scheduling books the new slot"),
    Move(S.BOOKING_SLOT, "SlotBooked", S.MOVING,
         _steps(("book_slot", R.SUCCEEDED), ("move_consultation", R.REQUESTED)),
         cause="Slot.Booked", command="consultations moves the consultation to the new start"),
    Move(S.MOVING, "Completed", S.COMPLETED,
         _steps(("move_consultation", R.SUCCEEDED), ("release_old_slot", R.REQUESTED)),
         cause="Consultation.Rescheduled", command="scheduling releases the old slot"),
    Move(S.HOLDING_SLOT, "Rejected", S.REJECTED,
         _steps(("hold_slot", R.FAILED), ("keep_original", R.REQUESTED)),
         cause="SlotRequestRefused, or the deadline", command=FORGET),
    Move(S.VALIDATING, "Rejected", S.REJECTED,
         _steps(("validate_registrants", R.FAILED), ("release_slot", R.REQUESTED), ("keep_original", R.REQUESTED)),
         cause="the registry refused, or the deadline", command=FORGET, compensation=RELEASE),
    Move(S.BOOKING_SLOT, "Rejected", S.REJECTED,
         _steps(("book_slot", R.FAILED), ("release_slot", R.REQUESTED), ("keep_original", R.REQUESTED)),
         cause="SlotRequestRefused, or the deadline", command=FORGET, compensation=RELEASE),
    Move(S.MOVING, "Rejected", S.REJECTED,
         _steps(("move_consultation", R.FAILED), ("release_slot", R.REQUESTED)),
         cause="Consultation.RescheduleFailed (the consultation was completed or changed meanwhile)",
         compensation=RELEASE),
    Move(S.HOLDING_SLOT, "Cancelled", S.CANCELLED, _steps(("hold_slot", R.CANCELLED), ("release_slot", R.REQUESTED)),
         cause=CANCELLED_WHILE_OPEN, compensation=RELEASE),
    Move(S.VALIDATING, "Cancelled", S.CANCELLED,
         _steps(("validate_registrants", R.CANCELLED), ("release_slot", R.REQUESTED)),
         cause=CANCELLED_WHILE_OPEN, compensation=RELEASE),
    Move(S.BOOKING_SLOT, "Cancelled", S.CANCELLED, _steps(("book_slot", R.CANCELLED), ("release_slot", R.REQUESTED)),
         cause=CANCELLED_WHILE_OPEN, compensation=RELEASE),
    Move(S.MOVING, "Cancelled", S.CANCELLED,
         _steps(("move_consultation", R.CANCELLED), ("release_slot", R.REQUESTED)),
         cause=CANCELLED_WHILE_OPEN, compensation=RELEASE),
    Move(S.COMPLETED, "SlotReleaseRequested", S.CANCELLED, _steps(("release_slot", R.REQUESTED)),
         cause="Consultation.CancelledByPatient or CancelledByClinic after the move", compensation=RELEASE),
    Move(S.REJECTED, "SlotReleaseRequested", S.REJECTED, _steps(("release_slot", R.REQUESTED)),
         cause="Slot.Held after the saga was rejected (once)", compensation=RELEASE),
))
"""The reschedule saga's persisted state machine (``process_managers/reschedule_saga.py``)."""
