"""Reading a consultation from Redis is one round trip: the serving version, the view and that
version's positions come from one script, counted on the wire (every send of a command or pipeline)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from uuid import uuid4

import pytest
import redis
from redis.connection import Connection

from application.read_models import ReadModels
from application.view_changes import ViewChanges
from domain.base import NotFoundError
from infrastructure.read_models import redis_store
from infrastructure.read_models.redis_store import RedisViewStore
from projections.catalog import BY_NAME
from projections.consultation_detail import consultation_key
from projections.ops import SetFields
from tests import services

DETAIL = "consultation_detail"
VERSION = BY_NAME[DETAIL].version


@pytest.fixture
def sends(monkeypatch) -> Iterator[list[object]]:
    """Every packed write to a Redis socket from this process: one per round trip."""
    sent: list[object] = []
    original = Connection.send_packed_command

    def counted(self, command, check_health=True):
        sent.append(command)
        return original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counted)
    yield sent


def booked(store: RedisViewStore, version: int, positions: dict[str, int], status: str = "CONFIRMED") -> str:
    consultation_id = str(uuid4())
    fields = {"consultation_id": consultation_id, "patient_id": str(uuid4()), "doctor_id": str(uuid4()),
              "start": "2027-01-04T08:00:00+00:00", "status": status, "reason": "cough", "version": "3"}
    first, *others = positions.items()
    assert store.apply(DETAIL, version, first[0], first[1], [SetFields(consultation_key(consultation_id), fields)])
    for leader, position in others:
        assert store.apply(DETAIL, version, leader, position, [])
    return consultation_id


def read_models(store: RedisViewStore, heads: dict[str, int]) -> ReadModels:
    return ReadModels(store, heads={leader: (lambda head=head: head) for leader, head in heads.items()})


def test_a_consultation_and_its_freshness_take_one_round_trip(store, sends):
    consultation_id = booked(store, VERSION, {"Consultations": 7, "Registry": 2})
    reads = read_models(store, {"Consultations": 9, "Registry": 2})
    sends.clear()
    read = reads.consultation_read(consultation_id)
    assert len(sends) == 1
    assert (read.view.status, read.view.version) == ("CONFIRMED", 3)
    assert (read.freshness.position, read.freshness.head, read.freshness.lag) == (9, 11, 2)


def test_it_reads_the_serving_version_and_that_versions_positions(store, sends):
    consultation_id = booked(store, VERSION, {"Consultations": 7, "Registry": 2})
    rebuilt = booked(store, VERSION + 1, {"Consultations": 9, "Registry": 4}, status="REQUESTED")
    store.set_serving_version(DETAIL, VERSION + 1)
    reads = read_models(store, {"Consultations": 9, "Registry": 4})
    sends.clear()
    read = reads.consultation_read(rebuilt)
    assert len(sends) == 1
    assert (read.view.status, read.freshness.position, read.freshness.lag) == ("REQUESTED", 13, 0)
    assert reads.freshness(DETAIL) == read.freshness  # the same answer as the separate reads give
    with pytest.raises(NotFoundError):
        read_models(store, {}).consultation_read(consultation_id)  # only in the retired version


def test_without_a_visible_head_there_is_no_freshness(store):
    consultation_id = booked(store, VERSION, {"Consultations": 7, "Registry": 2})
    assert read_models(store, {"Consultations": 7}).consultation_read(consultation_id).freshness is None


def test_the_separate_reads_it_replaces_took_six_round_trips(store, sends):
    """What the count would catch: the serving version, the hash, then per leader version + position."""
    consultation_id = booked(store, VERSION, {"Consultations": 7, "Registry": 2})
    reads = read_models(store, {"Consultations": 7, "Registry": 2})
    sends.clear()
    reads._fields(DETAIL, consultation_key(consultation_id))  # the read before this change
    reads.freshness(DETAIL)
    assert len(sends) == 6


def test_an_unknown_script_is_loaded_and_answers_the_same(store, monkeypatch):
    consultation_id = booked(store, VERSION, {"Consultations": 7, "Registry": 2})
    monkeypatch.setattr(redis_store, "READ_SHA", "0" * 40)  # as after SCRIPT FLUSH or a failover
    read = read_models(store, {"Consultations": 7, "Registry": 2}).consultation_read(consultation_id)
    assert (read.view.status, read.freshness.lag) == ("CONFIRMED", 0)


def test_a_cached_consultation_takes_no_round_trip_until_the_change_feed_tells_of_a_change(store, sends):
    consultation_id = booked(store, VERSION, {"Consultations": 7, "Registry": 2})
    other = booked(store, VERSION, {"Consultations": 8, "Registry": 3})
    changes, name = ViewChanges(), f"read-cache-{uuid4().hex[:8]}"
    watched = RedisViewStore(redis.Redis.from_url(services.redis_url(), decode_responses=True, client_name=name),
                             store.prefix)  # the same keys, through a client this test can find and cut
    reads = ReadModels(store, changes=changes)
    reads.stop_watching = watched.watch(changes)
    try:
        until(lambda: changes.live)
        # the first read goes to Redis; the next is served from the cache
        assert reads.consultation_read(consultation_id).view.status == "CONFIRMED"
        sends.clear()
        assert reads.consultation_read(consultation_id).view.status == "CONFIRMED"
        assert sends == []
        # a change to another consultation leaves it cached; a change to it is read anew
        told = changes.stamp(DETAIL, consultation_key(consultation_id))
        assert store.apply(DETAIL, VERSION, "Consultations", 9, [SetFields(consultation_key(other), {"version": "4"})])
        assert store.apply(DETAIL, VERSION, "Consultations", 10, [
            SetFields(consultation_key(consultation_id), {"status": "CANCELLED", "version": "4"})])
        until(lambda: changes.stamp(DETAIL, consultation_key(consultation_id)) != told)
        sends.clear()
        assert reads.consultation_read(consultation_id).view.status == "CANCELLED"
        assert len(sends) == 1
        # a lost feed forgets the cache: once subscribed again (a reset) every entry is read anew
        cached_under = changes.stamp(DETAIL, consultation_key(consultation_id))
        [subscriber] = [c["id"] for c in store.client.client_list(_type="pubsub") if c["name"] == name]
        store.client.client_kill_filter(_id=subscriber)
        until(lambda: changes.stamp(DETAIL, consultation_key(consultation_id)) not in (None, cached_under))
        sends.clear()
        assert reads.consultation_read(consultation_id).view.status == "CANCELLED"
        assert len(sends) == 1
    finally:
        reads.close()
        watched.close()


def until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.005)
