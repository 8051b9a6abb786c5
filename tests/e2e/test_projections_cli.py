"""``clinic projections status|rebuild`` in its own process, against Redis and a SQLite data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from infrastructure.read_models.redis_store import RedisViewStore
from projections.catalog import BY_NAME
from projections.runner import ProjectionRunner
from projections.store import RebuildTarget
from tests import services
from tests.integration.projections.conftest import delete_prefix

CLINIC = [sys.executable, "-m", "interfaces.cli.main"]
ROOT = Path(__file__).resolve().parents[2]
START = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)
HEADS = {"Registry": 2, "Consultations": 6, "Scheduling": 9, "Booking": 12, "Notifications": 3}
"""Two people, three confirmed bookings (and the parties of each, noted by notifications)."""


def run_clinic(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*CLINIC, *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Three bookings recorded by a clinic that has since stopped (its views were in its memory)."""
    from application.bootstrap import bootstrap
    from application.settings import Settings

    path = tmp_path_factory.mktemp("data")
    clinic = bootstrap(Settings(persistence="sqlite", data_dir=path, runner_tick_seconds=0.02))
    try:
        ana = clinic.registry.register_patient("Ana", "ana@example.org", date(1990, 1, 1), True)
        rui = clinic.registry.register_doctor("Dr. Rui", "cardiology")
        clinic.open_slots(rui, [(START + timedelta(hours=h), 30) for h in range(3)])
        for h in range(3):
            clinic.book(ana, rui, START + timedelta(hours=h), "check-up")
        clinic.wait_until_settled()
    finally:
        clinic.close()
    return path


@pytest.fixture
def env(data_dir) -> Iterator[dict[str, str]]:
    """The CLI's environment: the data directory, and Redis under a prefix of this test's own."""
    services.require_redis()
    prefix = f"test:cli:{uuid.uuid4().hex}:"
    yield {"CLINIC_DATA_DIR": str(data_dir), "CLINIC_REDIS_URL": services.redis_url(), "CLINIC_REDIS_PREFIX": prefix,
           "CLINIC_PERSISTENCE": "sqlite"}
    store = RedisViewStore.from_url(services.redis_url(), prefix)
    delete_prefix(store, prefix)
    store.close()


def status(env: dict[str, str]) -> dict:
    result = run_clinic("projections", "status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["projections"]


def test_status_shows_each_projection_its_version_positions_heads_and_lag(env):
    report = status(env)
    assert set(report) == set(BY_NAME)
    for name, projection in report.items():
        assert set(projection["leaders"]) == set(BY_NAME[name].leaders)
        for leader, state in projection["leaders"].items():
            assert state["position"] == 0 and state["head"] == state["lag"] == HEADS[leader]
            assert state["lag_seconds"] > 0 and projection["lag_seconds"] >= state["lag_seconds"]
        version = BY_NAME[name].version  # a store never written serves the code's version
        assert (projection["serving_version"], projection["code_version"], projection["rebuild"]) == (
            version, version, None)
        assert projection["lag"] == sum(HEADS[leader] for leader in projection["leaders"])
    table = run_clinic("projections", "status", env=env)
    assert table.returncode == 0 and "consultation_detail" in table.stdout and "Consultations" in table.stdout


def test_rebuild_switches_reports_progress_and_status_follows(env):
    result = run_clinic("projections", "rebuild", "consultation_detail", "--batch-size", "2", env=env)
    assert result.returncode == 0, result.stderr
    serving, new = BY_NAME["consultation_detail"].version, BY_NAME["consultation_detail"].version + 1
    events = HEADS["Consultations"] + HEADS["Registry"]  # it follows both logs (erasures: docs/gdpr.md)
    assert f"rebuilt consultation_detail into v{new}: {events} events" in result.stdout
    assert f"serving v{new} (was v{serving})" in result.stdout
    assert f"consultation_detail v{new}: {events}/{events} events (100.0%)" in result.stderr
    assert "events/s, ETA" in result.stderr
    after = status(env)["consultation_detail"]
    assert (after["serving_version"], after["lag"], after["rebuild"]) == (new, 0, None)


def test_dry_run_lists_differences_and_switches_nothing(env):
    with opened(env) as (apps, store):
        ProjectionRunner(apps, store, [BY_NAME["doctor_slots"]]).catch_up()  # the live runner built v1
        slot = next(key for key in store.dump("doctor_slots", 1) if key.startswith("slot:"))
        store.client.hset(f"{store.prefix}doctor_slots:v1:{slot}", "status", "CORRUPTED")
    result = run_clinic("projections", "rebuild", "doctor_slots", "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert "dry run: built doctor_slots v2 beside serving v1: 9 events" in result.stdout
    assert f"differing from v2: 1\n    {slot}\n" in result.stdout
    assert "missing from v1" not in result.stdout and "only in v1" not in result.stdout
    after = status(env)["doctor_slots"]
    assert after["serving_version"] == 1 and after["rebuild"] == {"version": 2, "code_version": 1, "lag": 0}


def test_a_rebuild_left_half_done_is_resumed(env):
    with opened(env) as (apps, store):
        store.set_rebuild_target("saga_status", RebuildTarget(2, 1))  # as an interrupted rebuild leaves it
        ProjectionRunner(apps, store, [BY_NAME["saga_status"]], batch_size=5,
                         versions={"saga_status": 2}).catch_up(max_batches=1)
    assert status(env)["saga_status"]["rebuild"]["lag"] == HEADS["Booking"] - 5
    result = run_clinic("projections", "rebuild", "saga_status", env=env)
    assert result.returncode == 0, result.stderr
    assert f"rebuilt saga_status into v2: {HEADS['Booking'] - 5} events" in result.stdout and "resumed" in result.stdout


def test_without_redis_the_cli_refuses_with_a_clear_message(env):
    for command in (["status"], ["rebuild", "consultation_detail"]):
        result = run_clinic("projections", *command, env={**env, "CLINIC_REDIS_URL": ""})
        assert result.returncode == 1
        assert "the views are in the clinic serve process's memory; set CLINIC_REDIS_URL" in result.stderr
    unknown = run_clinic("projections", "rebuild", "nope", env=env)
    assert unknown.returncode == 2 and "invalid choice: 'nope'" in unknown.stderr



@contextmanager
def opened(env: dict[str, str]) -> Iterator[tuple[dict, RedisViewStore]]:
    """The data directory's applications and the CLI's Redis views, in this process."""
    from application.bootstrap import build_applications
    from application.settings import Settings

    apps = build_applications(Settings(persistence="sqlite", data_dir=Path(env["CLINIC_DATA_DIR"])), False)
    store = RedisViewStore.from_url(env["CLINIC_REDIS_URL"], env["CLINIC_REDIS_PREFIX"])
    try:
        yield apps, store
    finally:
        store.close()
        for app in apps.values():
            app.close()


def test_operators_list_retry_and_skip_quarantined_events(env):
    from projections.quarantine import quarantined

    # given the read models caught up, and two events quarantined by consultation_detail as the runner
    # would have written them (an earlier version of its code raised on them)
    with opened(env) as (apps, store):
        ProjectionRunner(apps, store, list(BY_NAME.values())).catch_up()
        detail = BY_NAME["consultation_detail"]
        first, second = apps["Consultations"].recorder.select_notifications(start=1, limit=2)
        ops = [quarantined(detail.name, "Consultations", n, ValueError("an old bug")) for n in (first, second)]
        position = store.position(detail.name, detail.version, "operator")
        assert store.apply(detail.name, detail.version, "operator", position + 1, ops, expected_position=position)
    # when an operator lists them
    listed = run_clinic("projections", "errors", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)["consultation_detail"]
    assert [(e["id"], e["error"]) for e in entries] == [("Consultations:1", "ValueError: an old bug"),
                                                        ("Consultations:2", "ValueError: an old bug")]
    # then a skip needs confirming, and a retry of one applies it (the code is fixed now)
    refused = run_clinic("projections", "skip", "--all", env=env)
    assert refused.returncode == 1 and "add --yes" in refused.stderr
    retried = run_clinic("projections", "retry", "--projection", "consultation_detail", "Consultations:1", env=env)
    assert retried.returncode == 0 and "Consultations:1: applied" in retried.stdout
    skipped = run_clinic("projections", "skip", "--projection", "consultation_detail", "--all", "--yes", env=env)
    assert skipped.returncode == 0 and "Consultations:2: dropped" in skipped.stdout
    assert run_clinic("projections", "errors", env=env).stdout.strip() == "no quarantined events"
