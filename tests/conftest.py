"""Shared fixtures: a clinic on each event store, isolated per test, cleaned up after."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings

from application.bootstrap import bootstrap, migrate
from application.clinic import Clinic
from application.settings import Settings
from tests import services

BACKENDS = ["memory", "sqlite", "postgres", "sqlalchemy"]

# Hypothesis profiles. A property's own @settings(max_examples=...) wins over both: those budgets are
# sized for the CI run and stay as they are; a profile sets the budget of every property that
# does not name one (the aggregates' state machines built on tests/kit/machines.py among them).
# "quick" is the default on a developer's machine; "thorough" runs in CI (CI or
# CLINIC_REQUIRE_SERVICES set, as .ci/run does); HYPOTHESIS_PROFILE chooses either explicitly.
settings.register_profile("quick", max_examples=20, stateful_step_count=20, deadline=None)
settings.register_profile("thorough", max_examples=200, stateful_step_count=40, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])


def hypothesis_profile(env: Mapping[str, str] = os.environ) -> str:
    if env.get("HYPOTHESIS_PROFILE"):
        return env["HYPOTHESIS_PROFILE"]
    return "thorough" if env.get("CI") or env.get("CLINIC_REQUIRE_SERVICES") else "quick"


settings.load_profile(hypothesis_profile())


class ManualClock:
    """A clock the test moves by hand, so deadlines are reached without waiting."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2027, 1, 4, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """A fresh schema in the test database, dropped after the test."""
    services.require_postgres()
    import psycopg

    schema = f"clinic_test_{uuid.uuid4().hex[:12]}"
    dsn = f"host={services.POSTGRES_HOST} port={services.POSTGRES_PORT} dbname={services.POSTGRES_DB} user={services.POSTGRES_USER}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield schema
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def settings_for(backend: str, tmp_path, request: pytest.FixtureRequest) -> Settings:
    """Settings that put every context's store on ``backend``, isolated for this test."""
    if backend in ("memory", "sqlite"):
        return Settings(persistence=backend, data_dir=tmp_path / "data", runner_tick_seconds=0.05)
    schema = request.getfixturevalue("postgres_schema")
    if backend == "postgres":
        database = {"POSTGRES_DBNAME": services.POSTGRES_DB, "POSTGRES_HOST": services.POSTGRES_HOST,
                    "POSTGRES_PORT": str(services.POSTGRES_PORT), "POSTGRES_USER": services.POSTGRES_USER,
                    "POSTGRES_PASSWORD": "", "POSTGRES_SCHEMA": schema,
                    "POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "4"}  # parallel tiers share 100 connections
    else:
        url = (f"postgresql+psycopg://{services.POSTGRES_USER}@{services.POSTGRES_HOST}:"
               f"{services.POSTGRES_PORT}/{services.POSTGRES_DB}")
        database = {"SQLALCHEMY_URL": url, "SQLALCHEMY_SCHEMA": schema}
    return Settings(persistence=backend, create_tables=False, runner_tick_seconds=0.05, database=database)


@pytest.fixture
def make_clinic(tmp_path, request, clock) -> Iterator[Callable[[str], Clinic]]:
    """Build a running clinic on a backend (migrated first, as operators would)."""
    built: list[Clinic] = []

    def make(backend: str = "memory") -> Clinic:
        settings = settings_for(backend, tmp_path, request)
        if not settings.create_tables:
            migrate(settings)
        clinic = bootstrap(settings, clock=clock)
        built.append(clinic)
        return clinic

    yield make
    for clinic in built:
        clinic.close()


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    missing = services.missing_services()
    if missing and terminalreporter.stats.get("skipped"):
        terminalreporter.section("SKIPPED TIERS: tests needing these servers did not run", sep="!",
                                 red=True, bold=True)
        for name, message in missing.items():
            terminalreporter.write_line(f"{name}: {message}", red=True, bold=True)
        terminalreporter.write_line("Set CLINIC_REQUIRE_SERVICES=1 to make a missing server fail the run.")
