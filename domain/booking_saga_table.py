"""The booking saga as data: one row per move it makes, read by everything that follows it.

Each row says, for a state the saga is in and an event it records, the state it moves to, the steps
(as operators read them) the move appends, what other contexts take it as (the command or the
compensation) and what causes it. The saga aggregate's mutators
(``process_managers/booking_saga.py``), the saga status read model (``projections/saga_status.py``)
and the deadline timer's index of open sagas (``process_managers/booking.py``) all derive their
behaviour from ``BOOKING_SAGA``; a new step is a row here, its event class on the aggregate, and the
handler of the event that causes it.

Events are named by their class name on the saga aggregate (``BookingSaga.SlotHeld`` is
``"SlotHeld"``); ``tests/unit/process_managers/test_booking_saga_table.py`` holds the table and the
aggregate's event classes to each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property


class SagaState(StrEnum):
    HOLDING_SLOT = "HOLDING_SLOT"
    VALIDATING = "VALIDATING"
    BOOKING_SLOT = "BOOKING_SLOT"
    MOVING = "MOVING"
    """A reschedule waits for consultations to record the move (no deadline: the new slot is booked)."""
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


OPEN_STATES = frozenset({SagaState.HOLDING_SLOT, SagaState.VALIDATING, SagaState.BOOKING_SLOT})
"""The states a saga waits in under its deadline: the deadline timer watches these."""
ENDED_STATES = frozenset({SagaState.COMPLETED, SagaState.REJECTED, SagaState.CANCELLED})
"""The states a saga ends in: it waits on nothing more."""


class StepStatus(StrEnum):
    REQUESTED = "requested"
    SUCCEEDED = "succeeded"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"
    CANCELLED = "cancelled"
    """The consultation was cancelled while the saga waited on this step."""


@dataclass(frozen=True)
class Step:
    """One step as operators read it: ``hold_slot`` ``requested``."""

    name: str
    status: StepStatus


@dataclass(frozen=True)
class Move:
    """One row: in ``source`` (``None``: the saga does not exist yet), recording ``event`` moves the
    saga to ``target`` and appends ``steps``."""

    source: SagaState | None
    event: str
    target: SagaState
    steps: tuple[Step, ...]
    cause: str
    """What makes the saga record ``event`` (another context's event, the registry, the timer)."""
    command: str = ""
    """What another context does on ``event`` to go forward ("" if no other context takes it)."""
    compensation: str = ""
    """What another context does on ``event`` to undo an earlier step ("" if none)."""
    schedules_retry: bool = False
    """The event carries a ``retry_at``: the timer asks the registry again then."""

    @property
    def failed_step(self) -> str:
        """The step this move fails ("" if it fails none)."""
        return next((step.name for step in self.steps if step.status is StepStatus.FAILED), "")

    @property
    def cancelled_step(self) -> str:
        """The step this move abandons because the consultation was cancelled ("" if none)."""
        return next((step.name for step in self.steps if step.status is StepStatus.CANCELLED), "")

    @property
    def ended_step(self) -> str:
        """The step this move fails or abandons ("" if none): its events name it, to tell rows apart."""
        return self.failed_step or self.cancelled_step

    @property
    def releases_slot(self) -> bool:
        """The move asks scheduling to give the slot back."""
        return any(step.name == "release_slot" for step in self.steps)


def _steps(*pairs: tuple[str, StepStatus]) -> tuple[Step, ...]:
    return tuple(Step(name, status) for name, status in pairs)


S, R = SagaState, StepStatus
REJECT = "consultations rejects the consultation"
RELEASE = "scheduling releases the slot"
CANCELLED_WHILE_OPEN = "Consultation.CancelledByPatient or CancelledByClinic before the saga decided"


@dataclass(frozen=True)
class SagaTable:
    """Every move of one saga, by the aggregate class that records its events."""

    aggregate: str
    moves: tuple[Move, ...]

    @cached_property
    def states(self) -> frozenset[SagaState]:
        """Every state the saga can be in."""
        return frozenset(m.target for m in self.moves)

    def move(self, source: SagaState | None, event: str) -> Move | None:
        """The row for recording ``event`` in ``source`` (``None``: the saga may not record it there)."""
        return self._by_key.get((source, event))

    def moves_of(self, event: str) -> tuple[Move, ...]:
        """Every row that records ``event`` (the saga's state picks one)."""
        return self._by_event.get(event, ())

    @cached_property
    def events(self) -> frozenset[str]:
        return frozenset(self._by_event)

    @cached_property
    def _by_key(self) -> dict[tuple[SagaState | None, str], Move]:
        return {(m.source, m.event): m for m in self.moves}

    @cached_property
    def _by_event(self) -> dict[str, tuple[Move, ...]]:
        events = dict.fromkeys(m.event for m in self.moves)
        return {event: tuple(m for m in self.moves if m.event == event) for event in events}

    def starts(self, event: str) -> bool:
        """``event`` creates the saga."""
        return any(m.source is None for m in self.moves_of(event))

    def ends(self, event: str) -> bool:
        """After ``event`` the saga waits on nothing, whatever state it was in."""
        return all(m.target not in OPEN_STATES for m in self.moves_of(event))

    def schedules_retry(self, event: str) -> bool:
        return any(m.schedules_retry for m in self.moves_of(event))

    def clears_retry(self, event: str) -> bool:
        """After ``event`` the saga no longer validates: a retry it had scheduled is void."""
        return all(m.target is not SagaState.VALIDATING for m in self.moves_of(event))


WAITING = ((S.HOLDING_SLOT, "hold_slot"), (S.VALIDATING, "validate_registrants"), (S.BOOKING_SLOT, "book_slot"))
"""The states a saga taking a slot waits in under its deadline, and the step each waits on."""
REFUSED = {S.HOLDING_SLOT: "SlotRequestRefused, or the deadline", S.VALIDATING: "the registry refused, or the deadline",
           S.BOOKING_SLOT: "SlotRequestRefused, or the deadline"}


def taking_a_slot(started_by: str, hold: str, book: str) -> tuple[Move, ...]:
    """The rows every saga that takes a slot starts with: hold it, validate patient and doctor (retried while the
    registry does not answer), book it."""
    return (
        Move(None, "Started", S.HOLDING_SLOT, _steps(("hold_slot", R.REQUESTED)), cause=started_by, command=hold),
        Move(S.HOLDING_SLOT, "SlotHeld", S.VALIDATING,
             _steps(("hold_slot", R.SUCCEEDED), ("validate_registrants", R.REQUESTED)), cause="Slot.Held"),
        Move(S.VALIDATING, "ValidationUnavailable", S.VALIDATING, _steps(("validate_registrants", R.UNAVAILABLE)),
             cause="the registry did not answer", schedules_retry=True),
        Move(S.VALIDATING, "RegistrantsValidated", S.BOOKING_SLOT,
             _steps(("validate_registrants", R.SUCCEEDED), ("book_slot", R.REQUESTED)),
             cause="the registry found patient and doctor eligible", command=book),
    )


def rejections(then: str, command: str) -> tuple[Move, ...]:
    """A step failed in a waiting state: release the slot if it was held, then ``then`` (``command``)."""
    return tuple(
        Move(state, "Rejected", S.REJECTED,
             _steps((step, R.FAILED), *([] if state is S.HOLDING_SLOT else [("release_slot", R.REQUESTED)]),
                    (then, R.REQUESTED)),
             cause=REFUSED[state], command=command, compensation="" if state is S.HOLDING_SLOT else RELEASE)
        for state, step in WAITING)


def cancellations(cause: str, *waiting: tuple[SagaState, str]) -> tuple[Move, ...]:
    """The consultation was cancelled while the saga waited on a step: abandon it, release the slot."""
    return tuple(Move(state, "Cancelled", S.CANCELLED, _steps((step, R.CANCELLED), ("release_slot", R.REQUESTED)),
                      cause=cause, compensation=RELEASE) for state, step in waiting)


def late_releases(cancelled_after: str) -> tuple[Move, ...]:
    """A finished saga gives its slot back: the consultation was cancelled after it completed, or a hold
    arrived after it was rejected (once)."""
    return (
        Move(S.COMPLETED, "SlotReleaseRequested", S.CANCELLED, _steps(("release_slot", R.REQUESTED)),
             cause=cancelled_after, compensation=RELEASE),
        Move(S.REJECTED, "SlotReleaseRequested", S.REJECTED, _steps(("release_slot", R.REQUESTED)),
             cause="Slot.Held after the saga was rejected (once)", compensation=RELEASE),
    )


BOOKING_SAGA = SagaTable("BookingSaga", (
    *taking_a_slot("Consultation.Requested", hold="scheduling holds the slot", book="scheduling books the slot"),
    Move(S.BOOKING_SLOT, "Completed", S.COMPLETED,
         _steps(("book_slot", R.SUCCEEDED), ("confirm_consultation", R.REQUESTED)),
         cause="Slot.Booked", command="consultations confirms the consultation"),
    *rejections("reject_consultation", REJECT),
    *cancellations(CANCELLED_WHILE_OPEN, *WAITING),
    *late_releases("Consultation.CancelledByPatient or CancelledByClinic"),
))
