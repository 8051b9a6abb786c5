"""Blue-green rebuilds on Redis over a SQLite clinic: switch, resume, dry run, and readers never notice."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

import pytest

from application.read_models import ReadModels
from infrastructure.read_models.redis_store import glob_escape
from projections.catalog import ALL_PROJECTIONS, BY_NAME
from projections.memory_store import MemoryViewStore
from projections.rebuild import Progress, RebuildError, rebuild
from projections.runner import ProjectionRunner
from projections.store import RebuildTarget
from tests.projection_loop import LiveProjections

START = datetime(2027, 1, 5, 8, 0, tzinfo=UTC)
DETAIL = BY_NAME["consultation_detail"]
V = DETAIL.version
BOOKINGS = 12


class Stop(Exception):
    """Raised by a progress callback to interrupt a rebuild."""


def stop(progress: Progress) -> None:
    raise Stop


def bumped(version: int):
    """consultation_detail as if its code version had been bumped."""
    projection = type(DETAIL)()
    projection.version = version
    return projection


@pytest.fixture(scope="module")
def booked(tmp_path_factory):
    """A SQLite clinic with two patients' bookings, made through its use cases and settled."""
    from application.bootstrap import bootstrap
    from application.settings import Settings

    clinic = bootstrap(Settings(persistence="sqlite", data_dir=tmp_path_factory.mktemp("clinic"),
                                runner_tick_seconds=0.02))
    ana = clinic.registry.register_patient("Ana", "ana@example.org", date(1990, 1, 1), True)
    bo = clinic.registry.register_patient("Bo", "bo@example.org", date(1991, 1, 1), True)
    rui = clinic.registry.register_doctor("Dr. Rui", "cardiology")
    clinic.open_slots(rui, [(START + timedelta(hours=h), 30) for h in range(BOOKINGS)])
    clinic.notifications.subscribe("ops-1", "https://hooks.example.org/clinic", ["consultation.confirmed"])
    ids: dict[UUID, list[UUID]] = {ana: [], bo: []}
    for h in range(BOOKINGS):
        patient = ana if h % 3 else bo
        ids[patient].append(clinic.book(patient, rui, START + timedelta(hours=h), "check-up").consultation_id)
    clinic.wait_until_settled()
    clinic.consultations_of = ids
    yield clinic
    clinic.close()


@pytest.fixture
def apps(booked):
    return {app.name: app for app in booked.apps()}


@pytest.fixture
def live(apps, store):
    """The serving versions built by a live runner, as ``clinic run projections`` would have."""
    ProjectionRunner(apps, store, ALL_PROJECTIONS).catch_up()
    return store


def from_scratch(apps, redis_stores, projection) -> dict:
    fresh = redis_stores()
    ProjectionRunner(apps, fresh, [projection]).catch_up()
    return fresh.dump(projection.name, projection.version)


def keys_of(store, name: str, version: int) -> list[str]:
    return list(store.client.scan_iter(match=glob_escape(f"{store.prefix}{name}:v{version}:") + "*"))


def test_a_rebuild_switches_to_a_new_version_equal_to_a_build_from_scratch(apps, live, redis_stores):
    for projection in ALL_PROJECTIONS:
        v = projection.version  # the serving version the live runner made
        result = rebuild(apps, live, projection, batch_size=5, retire_grace=0)
        assert (result.serving_before, result.target, result.switched) == (v, v + 1, True)
        assert live.serving_version(projection.name) == v + 1
        assert live.dump(projection.name, v + 1) == from_scratch(apps, redis_stores, projection) != {}
        assert keys_of(live, projection.name, v) == [] and result.deleted_keys > 0
        assert live.rebuild_target(projection.name) is None
    assert rebuild(apps, live, DETAIL, retire_grace=0).target == V + 2  # and again beside the new one


def test_a_bumped_code_version_is_built_into_that_version(apps, live, redis_stores):
    result = rebuild(apps, live, bumped(5), retire_grace=0)
    assert (result.serving_before, result.target) == (V, 5)
    assert live.serving_version(DETAIL.name) == 5
    assert live.dump(DETAIL.name, 5) == from_scratch(apps, redis_stores, DETAIL)
    assert keys_of(live, DETAIL.name, V) == []
    assert rebuild(apps, live, bumped(5), retire_grace=0).target == 6


def test_an_interrupted_rebuild_resumes_into_the_same_version(apps, live, redis_stores):
    seen: list[Progress] = []

    def stop_after_two_rounds(progress: Progress) -> None:
        seen.append(progress)
        if len(seen) == 2:
            raise Stop

    with pytest.raises(Stop):
        rebuild(apps, live, DETAIL, batch_size=3, on_progress=stop_after_two_rounds)
    stopped_at = sum(live.position(DETAIL.name, V + 1, leader) for leader in DETAIL.leaders)
    head = seen[-1].total
    assert live.rebuild_target(DETAIL.name) == RebuildTarget(V + 1, DETAIL.version)
    assert live.serving_version(DETAIL.name) == V and 0 < stopped_at < head
    assert stopped_at <= seen[-1].done < head  # the last round's batch may still have been in flight
    assert seen[-1].events_per_second > 0 and seen[-1].eta_seconds > 0

    resumed: list[Progress] = []
    result = rebuild(apps, live, DETAIL, batch_size=3, on_progress=resumed.append, retire_grace=0)
    assert (result.target, result.resumed, result.events) == (V + 1, True, head - stopped_at)
    assert resumed[0].done == stopped_at + 3 and resumed[-1].done == resumed[-1].total == head
    assert resumed[-1].eta_seconds == 0
    assert live.dump(DETAIL.name, V + 1) == from_scratch(apps, redis_stores, DETAIL)


def test_a_rebuild_left_by_other_code_is_discarded_not_resumed(apps, live, redis_stores):
    with pytest.raises(Stop):
        rebuild(apps, live, DETAIL, batch_size=3, on_progress=stop)
    assert live.rebuild_target(DETAIL.name) == RebuildTarget(V + 1, V)
    result = rebuild(apps, live, bumped(V + 1), retire_grace=0)  # the code changed while it was half built
    assert (result.target, result.resumed) == (V + 1, False)
    assert live.dump(DETAIL.name, V + 1) == from_scratch(apps, redis_stores, DETAIL)


def test_a_rebuild_whose_target_is_retired_under_it_stops_without_switching(apps, live):
    def another_rebuild_switches(progress: Progress) -> None:
        live.set_serving_version(DETAIL.name, 9)

    with pytest.raises(RebuildError, match=f"v{V + 1} was retired"):
        rebuild(apps, live, DETAIL, batch_size=3, on_progress=another_rebuild_switches, retire_grace=0)
    assert live.serving_version(DETAIL.name) == 9


def test_a_dry_run_reports_the_differences_and_switches_nothing(apps, live, booked):
    first, second = [f"consultation:{c}" for ids in booked.consultations_of.values() for c in ids][:2]
    key, gone = first, second
    live.client.hset(f"{live.prefix}{DETAIL.name}:v{V}:{key}", "status", "CORRUPTED")
    live.client.unlink(f"{live.prefix}{DETAIL.name}:v{V}:{gone}")
    live.client.hset(f"{live.prefix}{DETAIL.name}:v{V}:consultation:stray", "status", "X")
    serving_before = live.dump(DETAIL.name, V)

    result = rebuild(apps, live, DETAIL, dry_run=True)
    assert (result.switched, result.target, result.deleted_keys) == (False, V + 1, 0)
    assert (result.diff.differing, result.diff.missing, result.diff.extra) == ([key], [gone], ["consultation:stray"])
    assert live.serving_version(DETAIL.name) == V and live.dump(DETAIL.name, V) == serving_before

    again = rebuild(apps, live, DETAIL, retire_grace=0)  # continues into what the dry run built
    assert (again.target, again.resumed, again.events) == (V + 1, True, 0)
    assert live.get_fields(DETAIL.name, V + 1, key)["status"] != "CORRUPTED"


class Reader(threading.Thread):
    """A client reading each patient's consultations and each consultation, over and over, noting bad answers."""

    def __init__(self, store, consultations_of: dict[UUID, list[UUID]]) -> None:
        super().__init__()
        self.reads, self.expected = ReadModels(store, wait_seconds=0), consultations_of
        self.failures: list[str] = []
        self.rounds, self.done = 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.read_everything()
            except Exception as error:  # noqa: BLE001 - collected for the assertion
                self.failures.append(repr(error))
            self.rounds += 1

    def read_everything(self) -> None:
        for patient, ids in self.expected.items():
            page = self.reads.patient_consultations(patient, limit=100)
            if sorted(view.consultation_id for view in page.items) != sorted(ids):
                self.failures.append(f"patient {patient}: {len(page.items)} of {len(ids)} consultations")
            for consultation_id in ids:
                if self.reads.consultation(consultation_id).status != "CONFIRMED":
                    self.failures.append(f"consultation {consultation_id} not confirmed")


def test_readers_get_whole_answers_throughout_rebuilds_while_the_live_runner_runs(apps, live, booked):
    reader = Reader(live, booked.consultations_of)
    follower = ProjectionRunner(apps, live, ALL_PROJECTIONS)
    reader.start()
    loop = LiveProjections(follower, apps).start()
    try:
        for name in ("consultation_detail", "patient_consultations", "consultation_detail"):
            before = reader.rounds
            rebuild(apps, live, BY_NAME[name], batch_size=2, on_progress=lambda _: time.sleep(0.01),
                    retire_grace=0.2)
            assert reader.rounds > before + 3  # reads ran while it built, switched and retired
    finally:
        reader.done.set()
        loop.stop()
        reader.join(timeout=10)
    assert reader.failures == []
    assert (live.serving_version("consultation_detail"), live.serving_version("patient_consultations")) == (V + 2, 2)
    assert follower.last_error is None


def test_the_live_runner_follows_the_switch_and_leaves_nothing_in_the_old_version(apps, live, booked):
    follower = ProjectionRunner(apps, live, ALL_PROJECTIONS)
    loop = LiveProjections(follower, apps).start()
    try:
        rebuild(apps, live, DETAIL, retire_grace=0.1)
        patient = booked.registry.register_patient("Cy", "cy@example.org", date(1992, 1, 1), True)
        doctor = booked.registry.register_doctor("Dr. Eva", "gp")
        booked.open_slots(doctor, [(START, 30)])
        consultation_id = booked.book(patient, doctor, START, "after the switch").consultation_id
        deadline = time.monotonic() + 5
        while live.get_fields(DETAIL.name, V + 1, f"consultation:{consultation_id}").get("status") != "CONFIRMED":
            assert time.monotonic() < deadline, "the live runner did not keep the new version up"
            time.sleep(0.01)
    finally:
        loop.stop()
    assert follower.status()[DETAIL.name].version == V + 1 and follower.last_error is None
    assert keys_of(live, DETAIL.name, V) == []


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_stores_keep_the_marker_and_refuse_batches_for_retired_versions(kind, redis_stores):
    store = MemoryViewStore() if kind == "memory" else redis_stores()
    assert store.rebuild_target("things") is None
    store.set_rebuild_target("things", RebuildTarget(3, 2))
    assert store.rebuild_target("things") == RebuildTarget(3, 2)
    store.set_rebuild_target("things", None)
    assert store.rebuild_target("things") is None
    store.set_serving_version("things", 2)
    assert store.apply("things", 1, "Leader", 1, []) is False
    assert store.apply("things", 2, "Leader", 1, []) and store.apply("things", 3, "Leader", 1, [])
