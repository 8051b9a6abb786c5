"""A follower fed by a broker ends as if each event had been delivered once, in order.

Hypothesis generates delivery schedules for the booking process manager: bookings'
events interleaved in any causal order (an event is only ever published after the
event that caused it was processed, so a saga's own chain keeps its order), message
ids of one leader arriving out of order, duplicates anywhere after the first
delivery (a lost ack, a crash between processing and ack, a redelivery), and
deliveries that crash mid-processing (nothing commits, the broker redelivers). Each
delivery goes through ``deliver``, the step every consumer uses. The sagas recorded
must equal those of an in-order, exactly-once delivery.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import Tracking
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.consultation import Consultation
from domain.slot import Slot, SlotRequestRefused
from domain.values import RejectionReason
from infrastructure.messaging.delivery import Delivery, deliver
from process_managers.booking import BookingProcessManager
from process_managers.booking_saga import saga_id_for
from process_managers.ports import Eligibility

NOW = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)
OUTCOMES = ["confirmed", "hold_refused", "patient_refused", "book_refused"]


class CrashingRegistry:
    """Answers from a table; raises (a crash mid-processing) while ``crash`` is set."""

    def __init__(self, refused: set[UUID]) -> None:
        self.refused = refused
        self.crash = False

    def booking_eligibility(self, patient_id: UUID, doctor_id: UUID) -> Eligibility:
        if self.crash:
            raise RuntimeError("worker crashed while validating")
        if patient_id in self.refused:
            return Eligibility.refused(RejectionReason.PATIENT_NOT_ELIGIBLE)
        return Eligibility.ok()


@dataclass
class Message:
    leader: str
    notification_id: int
    event: Any


@dataclass
class World:
    """Each booking's upstream events, as the leaders would publish them."""

    chains: list[list[Message]] = field(default_factory=list)
    refused_patients: set[UUID] = field(default_factory=set)


def booking_chain(outcome: str, world: World) -> list[Any]:
    """The events consultations and scheduling publish for one booking with this outcome."""
    consultation = Consultation(patient_id=uuid4(), doctor_id=uuid4(), start=NOW + timedelta(days=1),
                                reason="check-up")
    saga_id = saga_id_for(consultation.id)
    chain: list[Any] = [consultation.collect_events()[0]]
    slot = Slot(doctor_id=consultation.doctor_id, start=consultation.start, duration_minutes=30)
    slot.collect_events()
    if outcome == "hold_refused":
        refusal = SlotRequestRefused(booking_id=saga_id, slot_id=slot.id, command="hold", reason="taken")
        return chain + refusal.collect_events()
    slot.hold(saga_id, expires_at=NOW + timedelta(seconds=30), now=NOW)
    chain += slot.collect_events()
    if outcome == "patient_refused":
        world.refused_patients.add(consultation.patient_id)
    elif outcome == "book_refused":
        refusal = SlotRequestRefused(booking_id=saga_id, slot_id=slot.id, command="book", reason="hold lost")
        chain += refusal.collect_events()
    else:
        slot.book(saga_id)
        chain += slot.collect_events()
    return chain


def number(chains: list[list[Any]]) -> list[list[Message]]:
    """Give each event its leader's notification id, in the canonical (booking by booking) order."""
    next_id = {"Consultations": 0, "Scheduling": 0}
    numbered = []
    for chain in chains:
        messages = []
        for event in chain:
            leader = "Consultations" if isinstance(event, Consultation.Event) else "Scheduling"
            next_id[leader] += 1
            messages.append(Message(leader, next_id[leader], event))
        numbered.append(messages)
    return numbered


@st.composite
def schedules(draw: st.DrawFn) -> tuple[World, list[Message], list[tuple[Message, bool]]]:
    world = World()
    outcomes = draw(st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=4))
    world.chains = number([booking_chain(outcome, world) for outcome in outcomes])
    in_order = [message for chain in world.chains for message in chain]
    delivered: list[Message] = []
    cursors = [0] * len(world.chains)
    while any(c < len(chain) for c, chain in zip(cursors, world.chains, strict=True)):
        ready = [i for i, chain in enumerate(world.chains) if cursors[i] < len(chain)]
        i = draw(st.sampled_from(ready))
        delivered.append(world.chains[i][cursors[i]])
        cursors[i] += 1
    schedule = [(message, False) for message in delivered]
    for _ in range(draw(st.integers(0, 6))):  # redeliveries after a lost ack or a crash
        original = draw(st.integers(0, len(schedule) - 1))
        at = draw(st.integers(original + 1, len(schedule)))
        schedule.insert(at, (schedule[original][0], draw(st.booleans())))
    return world, in_order, schedule


def process_manager(world: World, directory: Path) -> tuple[BookingProcessManager, CrashingRegistry]:
    pm = BookingProcessManager(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                                    "SQLITE_DBNAME": str(directory / "booking.sqlite"),
                                    "SINGLE_ROW_TRACKING": "n"})
    pm.registry = CrashingRegistry(world.refused_patients)
    pm.clock = lambda: NOW
    return pm, pm.registry


def sagas(pm: BookingProcessManager, world: World) -> dict[UUID, list[tuple[str, dict[str, Any]]]]:
    """Each saga's stream: event types and data (not timestamps or metadata)."""
    skip = {"timestamp", "correlation_id", "causation_id", "actor"}
    streams = {}
    for chain in world.chains:
        saga_id = saga_id_for(chain[0].event.originator_id)
        streams[saga_id] = [(type(e).__name__, {k: v for k, v in vars(e).items() if k not in skip})
                            for e in pm.events.get(saga_id)]
    return streams


def play(pm: BookingProcessManager, registry: CrashingRegistry, schedule: list[tuple[Message, bool]]) -> int:
    """Deliver the schedule; a crashing delivery is retried later by the broker (appended)."""
    pending = list(schedule)
    processed = 0
    while pending:
        message, crash = pending.pop(0)
        registry.crash = crash
        try:
            outcome = deliver(pm, message.event, Tracking(message.leader, message.notification_id))
        except RuntimeError:
            pending.append((message, False))  # nothing committed: redelivered later
            continue
        processed += outcome is Delivery.PROCESSED
    return processed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
def test_any_delivery_schedule_ends_as_in_order_exactly_once_delivery(generated):
    world, in_order, schedule = generated
    with tempfile.TemporaryDirectory() as expected_dir, tempfile.TemporaryDirectory() as actual_dir:
        reference, reference_registry = process_manager(world, Path(expected_dir))
        play(reference, reference_registry, [(message, False) for message in in_order])
        pm, registry = process_manager(world, Path(actual_dir))
        processed = play(pm, registry, schedule)
        try:
            assert sagas(pm, world) == sagas(reference, world)
            assert processed == len(in_order)  # every message took effect exactly once
            assert pm.recorder.max_notification_id() == reference.recorder.max_notification_id()
        finally:
            reference.close()
            pm.close()
