"""Catching up on Redis sends the next batch before the last one's reply is read: still exactly once."""

from __future__ import annotations

from contextlib import contextmanager
from uuid import UUID

import pytest

from domain.consultation import Consultation
from infrastructure.read_models.redis_store import RedisViewStore
from process_managers.booking_saga import BookingSaga
from projections.catalog import ALL_PROJECTIONS
from projections.runner import ProjectionRunner
from tests.unit.projections.events import DEADLINE, DOCTOR, PATIENT, START
from tests.unit.projections.histories import dump_all, memory_apps


@pytest.fixture
def apps():
    apps = memory_apps()
    for i in range(3):
        saga = BookingSaga(consultation_id=UUID(int=100 + i), patient_id=PATIENT, doctor_id=DOCTOR,
                           slot_id=UUID(int=200 + i), deadline=DEADLINE)
        saga.record_slot_held()
        saga.record_registrants_valid()
        apps["Booking"].save(saga)
        apps["Consultations"].save(Consultation(patient_id=PATIENT, doctor_id=DOCTOR, start=START, reason="x"))
    return apps


def test_a_rival_moving_positions_mid_pipeline_makes_the_runner_reread(apps, redis_stores):
    store = redis_stores()
    rival = ProjectionRunner(apps, redis_stores(store.prefix), ALL_PROJECTIONS, batch_size=1)

    class RivalAfterFirstSend(RedisViewStore):
        @contextmanager
        def deferred(self):
            with super().deferred() as send:
                sent = []

                def send_then_rival(*args):
                    reply = send(*args)
                    if not sent:
                        rival.step()  # between this runner's sends and its reading of their replies
                    sent.append(reply)
                    return reply
                yield send_then_rival

    runner = ProjectionRunner(apps, RivalAfterFirstSend(store.client, store.prefix), ALL_PROJECTIONS, batch_size=4)
    runner.catch_up()
    rebuilt = redis_stores()
    ProjectionRunner(apps, rebuilt, ALL_PROJECTIONS).catch_up()
    assert dump_all(store) == dump_all(rebuilt)
    assert all(s.lag == 0 for s in runner.status().values())


def test_a_connection_left_with_unread_replies_is_closed_not_reused(store):
    with pytest.raises(RuntimeError), store.deferred() as send:
        send("p", 1, "L", 1, [])
        raise RuntimeError("stopped before reading")
    assert store.position("p", 1, "L") == 1
    with store.deferred() as send:
        assert send("p", 1, "L", 2, [])() is True
        assert send("p", 1, "L", 2, [])() is False
    assert store.client.ping()


def test_deferred_sends_fall_back_to_eval_when_the_script_is_unknown(store, monkeypatch):
    from infrastructure.read_models import redis_store

    monkeypatch.setattr(redis_store, "APPLY_SHA", "0" * 40)
    with store.deferred() as send:
        replies = [send("p", 1, "L", 1, []), send("p", 1, "L", 2, [], 1)]
        assert [reply() for reply in replies] == [True, True]
    assert store.position("p", 1, "L") == 2
