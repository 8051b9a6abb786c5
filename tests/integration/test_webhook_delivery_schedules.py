"""The notifications context fed in any order ends with exactly the deliveries each outcome owes.

Hypothesis generates subscriptions (a patient's or a doctor's own consultations, or all of them; any
events), consultations that end in any way (confirmed, rejected, cancelled before or after, completed,
no-show, moved, a move refused), and a delivery schedule for the consultations' events: any
interleaving, an outcome overtaking its own request (the request's message was being retried),
duplicates anywhere, in batches of any size. Whatever the schedule, each outcome becomes exactly one
delivery to each subscription that wants it and may see it, and nothing else is delivered.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import Tracking
from eventsourcing.utils import get_topic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.notifications import NotificationsApplication
from application.settings import BATCH_RECORDERS
from domain.consultation import Consultation
from domain.webhooks import EVENT_TYPES, OUTCOMES, WebhookDelivery
from process_managers.base import Job
from process_managers.delivery import Outcome, deliver_batch

START = datetime(2027, 1, 4, 9, tzinfo=UTC)
PATIENTS, DOCTORS = [uuid4(), uuid4()], [uuid4(), uuid4()]
ENDINGS: dict[str, list[str]] = {
    "confirmed": ["confirm"], "rejected": ["reject"], "withdrawn": ["cancel"], "cancelled": ["confirm", "cancel"],
    "completed": ["confirm", "complete"], "no_show": ["confirm", "no_show"], "moved": ["confirm", "move"],
    "not_moved": ["confirm", "move_refused"],
}


def consultation_events(patient: UUID, doctor: UUID, ending: str) -> list[Any]:
    consultation = Consultation(patient_id=patient, doctor_id=doctor, start=START, reason="check-up")
    for step in ENDINGS[ending]:
        if step == "confirm":
            consultation.confirm()
        elif step == "reject":
            consultation.reject("slot_unavailable")
        elif step == "cancel":
            consultation.cancel_by_patient("cannot come")
        elif step == "complete":
            consultation.complete()
        elif step == "no_show":
            consultation.mark_no_show()
        else:
            reschedule_id = consultation.request_reschedule(START + timedelta(hours=1))
            if step == "move":
                consultation.move(reschedule_id, START + timedelta(hours=1))
            else:
                consultation.reschedule_failed(reschedule_id, "slot_unavailable")
    return list(consultation.collect_events())


audiences = st.sampled_from([("patient", 0), ("patient", 1), ("doctor", 0), ("doctor", 1), ("all", 0)])
subscriptions = st.lists(st.tuples(audiences, st.sets(st.sampled_from(EVENT_TYPES), min_size=1)), min_size=1,
                         max_size=4)
consultations = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.sampled_from(sorted(ENDINGS))),
                         min_size=1, max_size=4)


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[Any], list[list[tuple[int, Any]]], list[list[int]]]:
    """Subscriptions; each consultation's events numbered as the consultations' log would; batches of
    notification ids to deliver (any order, duplicates), each failed job redelivered in a later batch."""
    subscribed = draw(subscriptions)
    chains, number = [], 0
    for patient, doctor, ending in draw(consultations):
        chain = []
        for event in consultation_events(PATIENTS[patient], DOCTORS[doctor], ending):
            number += 1
            chain.append((number, event))
        chains.append(chain)
    ids = draw(st.permutations(range(1, number + 1)))
    ids = [*ids, *draw(st.lists(st.integers(1, number), max_size=6))]  # duplicates after a lost ack
    cuts = sorted(draw(st.sets(st.integers(1, max(len(ids) - 1, 1)), max_size=4)))
    batches = [ids[a:b] for a, b in zip([0, *cuts], [*cuts, len(ids)], strict=True) if ids[a:b]]
    return subscribed, chains, batches


def notifications(directory: Path) -> NotificationsApplication:
    return NotificationsApplication(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                                         "PROCESS_RECORDER_TOPIC": BATCH_RECORDERS["sqlite"],
                                         "SQLITE_DBNAME": str(directory / "notifications.sqlite"),
                                         "SINGLE_ROW_TRACKING": "n"})


def subscribe(app: NotificationsApplication, subscribed: list[Any]) -> dict[UUID, tuple[str, int, set[str]]]:
    made = {}
    for number, ((audience, index), events) in enumerate(subscribed):
        patient = PATIENTS[index] if audience == "patient" else None
        doctor = DOCTORS[index] if audience == "doctor" else None
        subscription_id = app.subscribe(f"client-{number}", "https://hooks.example.org/x", sorted(events),
                                        patient_id=patient, doctor_id=doctor)
        made[subscription_id] = (audience, index, events)
    return made


def owed(made: dict[UUID, tuple[str, int, set[str]]], chains: list[list[tuple[int, Any]]]) -> list[tuple[Any, ...]]:
    """What in-order, exactly-once delivery owes: per outcome, one delivery to each subscription it concerns."""
    expected = []
    for chain in chains:
        request = chain[0][1]
        for _, event in chain[1:]:
            event_type = OUTCOMES.get(type(event).__name__)
            for subscription_id, (audience, index, events) in made.items():
                sees = audience == "all" or (audience == "patient" and request.patient_id == PATIENTS[index]) or (
                    audience == "doctor" and request.doctor_id == DOCTORS[index])
                if event_type in events and sees:
                    expected.append((subscription_id, f"{event.originator_id}/{event.originator_version}", event_type))
    return sorted(expected, key=str)


def recorded(app: NotificationsApplication) -> list[tuple[Any, ...]]:
    created = app.recorder.select_notifications(start=0, limit=10_000, topics=[get_topic(WebhookDelivery.Queued)])
    events = [app.mapper.to_domain_event(notification) for notification in created]
    return sorted(((e.subscription_id, e.source_event_id, e.event_type) for e in events), key=str)


def play(app: NotificationsApplication, chains: list[list[tuple[int, Any]]], batches: list[list[int]]) -> None:
    by_id = {number: event for chain in chains for number, event in chain}
    pending = [list(batch) for batch in batches]
    for _ in range(100):
        if not pending:
            return
        batch = pending.pop(0)
        jobs = [Job(by_id[number], Tracking("Consultations", number)) for number in batch]
        results = deliver_batch(app, jobs, exact=True)
        failed = [number for number, result in zip(batch, results, strict=True) if result.outcome is Outcome.FAILED]
        if failed:
            pending.append(failed)  # the broker redelivers them later (a retry queue)
    raise AssertionError(f"never delivered: {pending}")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_any_delivery_schedule_owes_each_subscription_exactly_its_outcomes(case):
    subscribed, chains, batches = case
    with tempfile.TemporaryDirectory() as directory:
        app = notifications(Path(directory))
        try:
            made = subscribe(app, subscribed)
            play(app, chains, batches)
            assert recorded(app) == owed(made, chains)
        finally:
            app.close()
