"""A follower fed by a broker ends as if each event had been delivered once, in order.

Hypothesis generates delivery schedules for the booking process manager: bookings'
events interleaved in any causal order (an event is only ever published after the
event that caused it was processed, so a saga's own chain keeps its order), message
ids of one leader arriving out of order, the patient cancelling at any point of a booking, bookings
then moved by the reschedule saga, duplicates anywhere after the first
delivery (a lost ack, a crash between processing and ack, a redelivery), and
deliveries that crash mid-processing (nothing commits, the broker redelivers). The sagas
recorded must equal those of an in-order, exactly-once delivery, both when each delivery is
its own batch (``deliver``) and when the broker hands the delivery engine batches of any size
(``deliver_batch``, as ``FollowerConsumer`` does), failed jobs being redelivered later. A second
property checks how a batch is split: whichever of its jobs fail, exactly those fail and every
other one takes effect.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import Tracking
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.settings import BATCH_RECORDERS
from domain.consultation import Consultation
from domain.slot import Slot, SlotRequestRefused
from process_managers.base import Job
from process_managers.booking import BookingProcessManager
from process_managers.booking_saga import SagaState, saga_id_for
from process_managers.delivery import Outcome, deliver, deliver_batch
from tests.kit import FakeRegistry

NOW = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)
OUTCOMES = ["confirmed", "hold_refused", "patient_refused", "book_refused", "rescheduled", "reschedule_refused"]
"""How a booking ends; the last two confirm it, then move it to another slot (or are refused the new one)."""


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


def booking_chain(outcome: str, world: World, cancelled_at: int | None = None) -> list[Any]:
    """The events consultations and scheduling publish for one booking with this outcome; with
    ``cancelled_at``, the patient cancels after that many of them (at least the request)."""
    consultation = Consultation(patient_id=uuid4(), doctor_id=uuid4(), start=NOW + timedelta(days=1),
                                reason="check-up")
    chain = [consultation.collect_events()[0], *_scheduling_replies(outcome, world, consultation)]
    if outcome.startswith("reschedule"):
        chain += _reschedule(outcome, consultation)
    if cancelled_at is not None:
        consultation.cancel_by_patient("cannot come")
        after_its_own = max(i for i, e in enumerate(chain) if isinstance(e, Consultation.Event)) + 1
        chain.insert(max(after_its_own, min(cancelled_at, len(chain))), consultation.collect_events()[0])
    return chain


def _reschedule(outcome: str, consultation: Consultation) -> list[Any]:
    """The confirmed consultation asks to move an hour later; scheduling holds and books the new slot
    (and consultations records the move), or refuses the hold."""
    consultation.confirm()
    consultation.collect_events()  # the booking process manager does not follow confirmations
    later = consultation.start + timedelta(hours=1)
    reschedule_id = consultation.request_reschedule(later)
    chain: list[Any] = consultation.collect_events()
    slot = Slot(doctor_id=consultation.doctor_id, start=later, duration_minutes=30)
    slot.collect_events()
    if outcome == "reschedule_refused":
        return chain + SlotRequestRefused(booking_id=reschedule_id, slot_id=slot.id, command="hold",
                                          reason="taken").collect_events()
    slot.hold(reschedule_id, expires_at=NOW + timedelta(seconds=30), now=NOW)
    slot.book(reschedule_id)
    chain += slot.collect_events()
    consultation.move(reschedule_id, later)
    return chain + consultation.collect_events()


def _scheduling_replies(outcome: str, world: World, consultation: Consultation) -> list[Any]:
    saga_id = saga_id_for(consultation.id)
    chain: list[Any] = []
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


bookings = st.lists(st.tuples(st.sampled_from(OUTCOMES), st.none() | st.integers(1, 4)), min_size=1, max_size=4)
"""Each booking's outcome, and after how many of its events the patient cancels (``None``: never)."""


@st.composite
def schedules(draw: st.DrawFn) -> tuple[World, list[Message], list[tuple[Message, bool]]]:
    world = World()
    world.chains = number([booking_chain(outcome, world, cancelled_at) for outcome, cancelled_at in draw(bookings)])
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


def process_manager(world: World, directory: Path) -> tuple[BookingProcessManager, FakeRegistry]:
    pm = BookingProcessManager(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                                    "PROCESS_RECORDER_TOPIC": BATCH_RECORDERS["sqlite"],
                                    "SQLITE_DBNAME": str(directory / "booking.sqlite"),
                                    "SINGLE_ROW_TRACKING": "n"})
    pm.registry = FakeRegistry(refused=world.refused_patients, failure=RuntimeError("worker crashed while validating"))
    pm.clock = lambda: NOW
    return pm, pm.registry


def sagas(pm: BookingProcessManager, world: World) -> dict[UUID, list[tuple[str, dict[str, Any]]]]:
    """Each saga's stream: event types and data (not timestamps or metadata)."""
    skip = {"timestamp", "correlation_id", "causation_id", "actor"}
    streams = {}
    for chain in world.chains:
        saga_ids = [saga_id_for(chain[0].event.originator_id)] + [
            m.event.reschedule_id for m in chain if isinstance(m.event, Consultation.RescheduleRequested)]
        for saga_id in saga_ids:
            streams[saga_id] = [(type(e).__name__, {k: v for k, v in vars(e).items() if k not in skip})
                                for e in pm.events.get(saga_id)]
    return streams


def play(pm: BookingProcessManager, registry: FakeRegistry, schedule: list[tuple[Message, bool]]) -> int:
    """Deliver the schedule; a crashing delivery is retried later by the broker (appended)."""
    pending = list(schedule)
    processed = 0
    while pending:
        message, crash = pending.pop(0)
        registry.failing = crash
        try:
            outcome = deliver(pm, message.event, Tracking(message.leader, message.notification_id))
        except RuntimeError:
            pending.append((message, False))  # nothing committed: redelivered later
            continue
        processed += outcome is Outcome.PROCESSED
    return processed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
def test_any_delivery_schedule_ends_as_in_order_exactly_once_delivery(generated):
    world, in_order, schedule = generated
    assert_ends_as_in_order_delivery(world, in_order, lambda pm, registry: play(pm, registry, schedule))


def assert_ends_as_in_order_delivery(world: World, in_order: list[Message],
                                     deliver_all: Callable[[Any, Any], int]) -> None:
    """``deliver_all(pm, registry)`` (returning how many deliveries took effect) leaves the saga store
    as delivering ``in_order`` once each does."""
    with tempfile.TemporaryDirectory() as expected_dir, tempfile.TemporaryDirectory() as actual_dir:
        reference, reference_registry = process_manager(world, Path(expected_dir))
        play(reference, reference_registry, [(message, False) for message in in_order])
        pm, registry = process_manager(world, Path(actual_dir))
        processed = deliver_all(pm, registry)
        try:
            assert sagas(pm, world) == sagas(reference, world)
            assert processed == len(in_order)  # every message took effect exactly once
            assert pm.recorder.max_notification_id() == reference.recorder.max_notification_id()
        finally:
            reference.close()
            pm.close()


@st.composite
def batched_deliveries(draw: st.DrawFn) -> tuple[World, list[Message], list[tuple[list[Message], set[int]]]]:
    """A broker's batches: each takes some of the messages it may send now (a chain's next event once
    the one before it took effect, in any order across chains) and repeats of ones sent before; some
    of its jobs crash. What does not take effect is sent again in a later batch."""
    world = World()
    world.chains = number([booking_chain(outcome, world, cancelled_at) for outcome, cancelled_at in draw(bookings)])
    in_order = [message for chain in world.chains for message in chain]
    plan: list[tuple[list[int], list[int], set[int]]] = []  # per batch: chain picks, repeats, crashing picks
    for _ in range(draw(st.integers(1, 8))):
        picks = draw(st.lists(st.integers(0, len(world.chains) - 1), max_size=4))
        repeats = draw(st.lists(st.integers(0, len(in_order) - 1), max_size=3))
        crashing = set(draw(st.lists(st.integers(0, max(len(picks) - 1, 0)), max_size=2)))
        plan.append((picks, repeats, crashing))
    return world, in_order, plan


def play_batches(pm: BookingProcessManager, registry: FakeRegistry, world: World,
                 plan: list[tuple[list[int], list[int], set[int]]]) -> int:
    """Deliver the plan's batches, then whatever is left one chain step at a time; returns how many
    jobs took effect."""
    done = [0] * len(world.chains)  # per chain: how many of its events took effect
    sent: list[Message] = []
    processed = 0

    def batch(messages: list[Message], crashing: set[int]) -> None:
        nonlocal processed
        registry.failing_patients = {world.chains[c][0].event.patient_id for c in crashing}
        jobs = [Job(m.event, Tracking(m.leader, m.notification_id)) for m in messages]
        results = deliver_batch(pm, jobs, exact=True)
        registry.failing_patients = set()
        for message, result in zip(messages, results, strict=True):
            processed += result.outcome is Outcome.PROCESSED
            if result.outcome is Outcome.PROCESSED:
                chain = next(i for i, c in enumerate(world.chains) if message in c)
                done[chain] = max(done[chain], world.chains[chain].index(message) + 1)
        sent.extend(messages)

    for picks, repeats, crashing in plan:
        messages, chains = [], []
        for chain in dict.fromkeys(picks):  # one step per chain: the next one needs this one to take effect
            if done[chain] < len(world.chains[chain]):
                messages.append(world.chains[chain][done[chain]])
                chains.append(chain)
        messages += [sent[r % len(sent)] for r in repeats if sent]
        batch(messages, {chains[i] for i in crashing if i < len(chains)})
    while any(d < len(chain) for d, chain in zip(done, world.chains, strict=True)):
        batch([chain[d] for d, chain in zip(done, world.chains, strict=True) if d < len(chain)], set())
    return processed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batched_deliveries())
def test_any_schedule_of_batches_ends_as_in_order_exactly_once_delivery(generated):
    world, in_order, plan = generated
    assert_ends_as_in_order_delivery(world, in_order, lambda pm, registry: play_batches(pm, registry, world, plan))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 12).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)),
                                                       st.booleans())))
def test_a_failing_batch_is_split_so_only_its_poison_jobs_fail(case):
    size, poison, in_order = case
    # given sagas holding their slots, whose validations are delivered as one batch
    world = World(chains=number([booking_chain("confirmed", World()) for _ in range(size)]))
    with tempfile.TemporaryDirectory() as directory:
        pm, registry = process_manager(world, Path(directory))
        try:
            requested = [Job(c[0].event, Tracking(c[0].leader, c[0].notification_id)) for c in world.chains]
            assert {r.outcome for r in deliver_batch(pm, requested)} == {Outcome.PROCESSED}
            # when the registry fails on the poison ones (an error the policy does not turn into an event)
            registry.failing_patients = {world.chains[i][0].event.patient_id for i in poison}
            held = [Job(c[1].event, Tracking(c[1].leader, c[1].notification_id)) for c in world.chains]
            results = deliver_batch(pm, held, stop_at_failure=in_order)
            # then exactly the poison jobs fail (in order: and the ones after the first are not tried)
            first = min(poison, default=size)
            expected = [Outcome.PENDING if in_order and i > first else Outcome.FAILED if i in poison
                        else Outcome.PROCESSED for i in range(size)]
            assert [r.outcome for r in results] == expected
            assert all(isinstance(r.error, RuntimeError) for r in results if r.outcome is Outcome.FAILED)
            # and every processed one took effect, once; the others left their saga as it was
            for i, chain in enumerate(world.chains):
                saga = pm.repository.get(saga_id_for(chain[0].event.originator_id))
                took_effect = expected[i] is Outcome.PROCESSED
                assert saga.state == (SagaState.BOOKING_SLOT if took_effect else SagaState.HOLDING_SLOT)
        finally:
            pm.close()
