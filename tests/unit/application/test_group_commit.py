"""Group commit: concurrent saves share transactions, and each caller still gets its own outcome."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError
from hypothesis import given, settings
from hypothesis import strategies as st

from application.bootstrap import build_applications
from application.group_commit import GroupCommit
from application.settings import Settings
from domain.metadata import event_metadata

START = datetime(2027, 1, 4, 8, tzinfo=UTC)


class Counter(Aggregate):
    @event("Created")
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    @event("Incremented")
    def increment(self) -> None:
        self.count += 1


class Store(Application):
    name = "Store"


def until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.001)


def held_first_commit(app, group: GroupCommit, waiting: int):
    """Make the first transaction wait until ``waiting`` other saves have queued behind it."""
    record, first = app._record, threading.Event()

    def slow_first(processing_event):
        if not first.is_set():
            first.set()
            until(lambda: len(group._waiting) >= waiting)
        return record(processing_event)

    app._record = slow_first


def queue_up_behind_each_commit(app, group: GroupCommit, threads: int, total: int) -> None:
    """Before each transaction, let the other callers (``threads`` at a time, ``total`` saves) queue, so
    batches form whatever the scheduling; a caller that does not arrive within 50 ms is not waited for."""
    record, started = app._record, group.save
    group.started = group.returned = 0

    def save(*objs):
        group.started += 1
        return started(*objs)

    def queued(batch: int) -> bool:
        in_flight = group.started - group.returned
        return in_flight >= min(threads, total - group.returned) and len(group._waiting) >= in_flight - batch

    def record_when_queued(processing_event):
        deadline = time.monotonic() + 0.05
        while not queued(len(processing_event.events)) and time.monotonic() < deadline:
            time.sleep(0.0005)
        return record(processing_event)

    group.save, app._record = save, record_when_queued


def test_concurrent_saves_share_one_transaction_and_each_gets_its_own_recordings():
    app = Store(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    group = GroupCommit(app)
    held_first_commit(app, group, waiting=9)
    counters = [Counter(f"c{i}") for i in range(10)]

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda c: (c, group.save(c)), counters))

    for counter, recordings in results:
        assert [r.domain_event.originator_id for r in recordings] == [counter.id]
    assert group.batches == 2 and group.largest_batch == 9  # the first alone, the nine that queued together
    ids = [n.id for n in app.recorder.select_notifications(0, 100)]
    assert ids == list(range(1, 11))
    assert sorted(r.notification.id for _, rs in results for r in rs) == ids


def test_a_failing_save_in_a_batch_fails_only_its_own_caller():
    app = Store(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    counter = Counter("shared")
    app.save(counter)
    group = GroupCommit(app)
    held_first_commit(app, group, waiting=5)
    # two copies of the same version: whichever is recorded second conflicts
    first, second = app.repository.get(counter.id), app.repository.get(counter.id)
    first.increment()
    second.increment()
    others = [Counter(f"o{i}") for i in range(4)]
    blocker = Counter("first")

    def save(aggregate):
        try:
            return aggregate, group.save(aggregate), None
        except IntegrityError as error:
            return aggregate, None, error

    with ThreadPoolExecutor(7) as pool:
        head = pool.submit(save, blocker)
        until(lambda: group._committing)
        rest = list(pool.map(save, [first, second, *others]))
    outcomes = [head.result(), *rest]

    failed = [aggregate for aggregate, _, error in outcomes if error is not None]
    assert len(failed) == 1 and failed[0] in (first, second)
    assert all(recordings for aggregate, recordings, error in outcomes if error is None)
    assert app.repository.get(counter.id).count == 1
    assert len(app.recorder.select_notifications(0, 100)) == 1 + 1 + 1 + 4  # shared, its increment, first, others


def test_a_context_application_groups_when_the_setting_is_on(tmp_path):
    apps = build_applications(Settings(persistence="sqlite", data_dir=tmp_path, group_commit=True))
    consultations = apps["Consultations"]
    try:
        assert isinstance(consultations.group_commit, GroupCommit)
        held_first_commit(consultations, consultations.group_commit, waiting=7)
        store, calls = consultations.mapper.keys.store, []
        link, link_many = store.link, store.link_many
        store.link = lambda *pair: (calls.append(("link", 1)), link(*pair))[1]
        store.link_many = lambda pairs: (calls.append(("link_many", len(pairs))), link_many(pairs))[1]
        patients = [uuid4() for _ in range(8)]

        def request(i: int) -> UUID:
            with event_metadata(correlation_id=f"req-{i}"):
                return consultations.request_consultation(patients[i], uuid4(), START + timedelta(hours=i), "check-up")

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(request, range(8)))

        assert consultations.group_commit.largest_batch == 7
        # the first save alone links its consultation itself; the batch's seven links are one transaction
        assert calls == [("link", 1), ("link_many", 7)]
        assert [store.subject_of(str(c)) for c in ids] == [str(p) for p in patients]
        for i, consultation_id in enumerate(ids):  # each consultation as its own caller made it, sealed and all
            view = consultations.consultation(consultation_id)
            assert (view.status, view.reason, view.start) == ("REQUESTED", "check-up", START + timedelta(hours=i))
            [requested] = consultations.events.get(consultation_id)
            assert requested.correlation_id == f"req-{i}"
    finally:
        for app in apps.values():
            app.close()


def test_the_setting_is_on_by_default(tmp_path):
    assert Settings.from_env({}).group_commit is True
    assert Settings.from_env({"CLINIC_GROUP_COMMIT": "off"}).group_commit is False
    grouped = build_applications(Settings(persistence="memory", data_dir=tmp_path))
    alone = build_applications(Settings(persistence="memory", data_dir=tmp_path, group_commit=False))
    try:
        assert all(app.group_commit is not None for app in grouped.values())
        assert all(app.group_commit is None for app in alone.values())
    finally:
        for app in [*grouped.values(), *alone.values()]:
            app.close()


def test_max_batch_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        GroupCommit(Store(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}), max_batch=0)


batch_sizes: list[int] = []


@settings(max_examples=40, deadline=None)
@given(plan=st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=1, max_size=24),
       threads=st.integers(1, 8), max_batch=st.integers(1, 6))
def test_grouped_saves_end_as_if_each_had_been_saved_alone(plan, threads, max_batch):
    """Any mix of new aggregates and conflicting updates, on any number of threads and batch size:
    each caller succeeds or gets its own IntegrityError; what is stored is exactly the successes;
    of the updates made from the same version of one counter, exactly one succeeds."""
    app = Store(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    counters = [Counter(f"c{k}") for k in range(5)]
    app.save(*counters)
    group = GroupCommit(app, max_batch=max_batch)
    queue_up_behind_each_commit(app, group, threads, len(plan))
    saves = []
    for k, update in plan:
        if update:
            copy = app.repository.get(counters[k].id)  # every update of counter k starts from version 1
            copy.increment()
            saves.append(("update", k, copy))
        else:
            saves.append(("new", k, Counter(f"n{len(saves)}")))

    def save(item):
        kind, k, aggregate = item
        try:
            return kind, k, aggregate, group.save(aggregate), None
        except IntegrityError as error:
            return kind, k, aggregate, None, error
        finally:
            group.returned += 1

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(save, saves))
    assert group.batches <= len(saves)
    batch_sizes.append(group.largest_batch)

    stored = {(n.originator_id, n.originator_version) for n in app.recorder.select_notifications(0, 1_000)}
    succeeded = {(r.domain_event.originator_id, r.domain_event.originator_version)
                 for *_, recordings, error in outcomes if error is None for r in recordings}
    initial = {(c.id, 1) for c in counters}
    assert stored == initial | succeeded
    for kind, _k, aggregate, recordings, error in outcomes:
        if kind == "new":
            assert error is None and [r.domain_event.originator_id for r in recordings] == [aggregate.id]
        elif error is None:
            assert [r.domain_event.originator_id for r in recordings] == [aggregate.id]
    for k in {k for kind, k, *_ in outcomes if kind == "update"}:
        wins = [o for o in outcomes if o[0] == "update" and o[1] == k and o[4] is None]
        assert len(wins) == 1
        assert app.repository.get(counters[k].id).count == 1


def test_the_property_saw_batches_form():
    """The examples above are worth something only if saves were grouped in them (pytest runs this after)."""
    if not batch_sizes:
        pytest.skip("run with the property test")
    assert max(batch_sizes) > 1
