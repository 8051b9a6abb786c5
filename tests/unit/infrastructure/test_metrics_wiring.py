"""Each instrument driven through the real code path, read back from its own registry.

(The relay, the consumer and the queue depths need a broker: tests/integration/test_metrics_messaging.py.)
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest
from joserfc.jwk import ECKey

from application.bootstrap import bootstrap, build_applications
from application.clinic import Clinic
from application.read_model_desk import ReadModelDesk
from application.services import _breaker
from application.settings import Settings
from domain.slot import slot_id_for
from infrastructure.observability.metrics import Metrics
from infrastructure.registry_client import HttpRegistryClient, RegistryCallPolicy
from infrastructure.security.service_tokens import DevServiceTokens
from infrastructure.security.tokens import TokenIssuer
from process_managers.ports import RegistryUnavailableError
from projections.catalog import ALL_PROJECTIONS
from projections.memory_store import MemoryViewStore
from projections.runner import ProjectionRunner
from tests.conftest import ManualClock
from tests.kit.eventually import eventually
from tests.kit.webhooks import webhook_receiver
from tests.unit.process_managers.test_booking_process_manager import Booking, FakeRegistry, Harness

START = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics("test")


@pytest.fixture
def clinic(metrics: Metrics) -> Iterator[Clinic]:
    clinic = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05), metrics=metrics)
    yield clinic
    clinic.close()


def given_a_patient_and_an_open_slot(clinic: Clinic) -> tuple:
    patient = clinic.registry.register_patient("Ana", "ana@example.org", date(1990, 1, 1), True)
    doctor = clinic.registry.register_doctor("Dr Rui", "gp")
    clinic.open_slots(doctor, [(START, 30)])
    return patient, doctor


def test_every_append_is_counted_and_timed_by_application(clinic, metrics):
    assert metrics.sample("clinic_event_store_appended_events_total", application="registry") == 0
    clinic.registry.register_patient("Ana", "ana@example.org", date(1990, 1, 1), True)
    clinic.registry.register_doctor("Dr Rui", "gp")
    assert metrics.sample("clinic_event_store_appended_events_total", application="registry") == 2
    assert metrics.sample("clinic_event_store_append_duration_seconds_count", application="registry") == 2
    assert metrics.sample("clinic_event_store_append_duration_seconds_sum", application="registry") > 0


def test_a_confirmed_and_a_compensated_saga_are_counted_with_their_durations(clinic, metrics):
    patient, doctor = given_a_patient_and_an_open_slot(clinic)
    # when two patients book the same slot: the first confirms, the second is compensated
    clinic.book(patient, doctor, START, "check-up")
    clinic.runner.wait_until_idle()
    clinic.book(patient, doctor, START, "again")
    clinic.runner.wait_until_idle()

    assert metrics.sample("clinic_sagas_started_total") == 2
    assert metrics.sample("clinic_sagas_confirmed_total") == 1
    assert metrics.sample("clinic_sagas_compensated_total", reason="slot_unavailable") == 1
    assert metrics.sample("clinic_sagas_compensated_total", reason="deadline_exceeded") == 0
    assert metrics.sample("clinic_sagas_timed_out_total") == 0
    for outcome in ("confirmed", "compensated"):
        assert metrics.sample("clinic_saga_duration_seconds_count", outcome=outcome) == 1
        assert 0 < metrics.sample("clinic_saga_duration_seconds_sum", outcome=outcome) < 60
    # and the events the sagas caused were appended by every context
    for application in ("scheduling", "consultations", "booking"):
        assert metrics.sample("clinic_event_store_appended_events_total", application=application) > 0


def test_reschedules_are_counted_by_outcome_and_apart_from_bookings(clinic, metrics):
    patient, doctor = given_a_patient_and_an_open_slot(clinic)
    later = START + timedelta(hours=1)
    clinic.open_slots(doctor, [(later, 30)])
    consultation = clinic.book(patient, doctor, START, "check-up").consultation_id
    clinic.runner.wait_until_idle()
    # when it moves to the open slot, then fails to move where no slot is open
    clinic.consultations.reschedule(consultation, later)
    clinic.runner.wait_until_idle()
    clinic.consultations.reschedule(consultation, later + timedelta(hours=1))
    clinic.runner.wait_until_idle()

    assert metrics.sample("clinic_reschedules_total", outcome="moved") == 1
    assert metrics.sample("clinic_reschedules_total", outcome="failed") == 1
    assert metrics.sample("clinic_reschedules_total", outcome="cancelled") == 0
    assert (metrics.sample("clinic_sagas_started_total"), metrics.sample("clinic_sagas_confirmed_total")) == (1, 1)
    assert metrics.sample("clinic_sagas_compensated_total", reason="slot_unavailable") == 0


def test_webhook_attempts_are_counted_by_outcome_and_timed(metrics):
    clinic = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05, webhook_allow_http=True,
                                webhook_allow_private_networks=True, webhook_retry_seconds=0.1), metrics=metrics)
    try:
        with webhook_receiver() as receiver:
            assert metrics.sample("clinic_webhook_attempts_total", outcome="failed") == 0  # the series exist
            receiver.answers = [503]
            patient, doctor = given_a_patient_and_an_open_slot(clinic)
            clinic.notifications.subscribe("ops-1", receiver.url, ["consultation.confirmed"])
            clinic.book(patient, doctor, START, "check-up")
            receiver.next(), receiver.next()  # refused, then taken
            eventually(lambda: metrics.sample("clinic_webhook_attempts_total", outcome="delivered") == 1,
                       what="the delivery counted")
    finally:
        clinic.close()
    assert metrics.sample("clinic_webhook_attempts_total", outcome="retrying") == 1
    assert metrics.sample("clinic_webhook_attempt_duration_seconds_count") == 2


def test_a_saga_past_its_deadline_is_counted_as_timed_out_and_compensated(metrics):
    clock = ManualClock()
    harness = Harness(FakeRegistry(RegistryUnavailableError("registry down")), clock)
    harness.pm.saga_observer = metrics
    metrics.start_sagas()
    booking = Booking(clock)
    harness.deliver(booking.requested())
    harness.deliver(booking.slot_held())  # the registry never answers
    clock.advance(seconds=31)

    assert harness.time_out()[0] == [booking.saga_id]
    assert metrics.sample("clinic_sagas_timed_out_total") == 1
    assert metrics.sample("clinic_sagas_compensated_total", reason="validation_unavailable") == 1
    assert metrics.sample("clinic_sagas_confirmed_total") == 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_the_registry_breaker_reports_its_state_and_each_transition(metrics):
    issuer = TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), "clinic-dev", "clinic-api")
    now = [0.0]
    policy = RegistryCallPolicy(max_attempts=1, failure_threshold=1, reset_timeout=5.0)
    client = HttpRegistryClient(f"https://127.0.0.1:{_closed_port()}", ssl.create_default_context(), policy,
                                tokens=DevServiceTokens(issuer, "booking", "registry:eligibility"),
                                on_state_change=_breaker(metrics), clock=lambda: now[0])
    state = lambda: metrics.sample("clinic_circuit_breaker_state", dependency="registry")  # noqa: E731
    transitions = lambda old, new: metrics.sample(  # noqa: E731
        "clinic_circuit_breaker_transitions_total", dependency="registry", from_state=old, to_state=new)
    assert (state(), transitions("closed", "open")) == (0, 0)
    try:
        with pytest.raises(RegistryUnavailableError):  # refused: the circuit opens
            client.booking_eligibility(uuid4(), uuid4())
        assert (state(), transitions("closed", "open")) == (2, 1)
        now[0] += 6  # past the reset timeout: one trial, refused again
        with pytest.raises(RegistryUnavailableError):
            client.booking_eligibility(uuid4(), uuid4())
        assert (transitions("open", "half_open"), transitions("half_open", "open"), state()) == (1, 1, 2)
        assert transitions("half_open", "closed") == 0
    finally:
        client.close()


def test_projection_positions_and_lags_are_reported_per_leader(metrics):
    apps = build_applications(Settings(persistence="memory"))
    runner = ProjectionRunner(apps, MemoryViewStore(), ALL_PROJECTIONS)
    desk = ReadModelDesk(apps, runner.store)
    try:
        patient = apps["Registry"].register_patient("Ana", "ana@example.org", date(1990, 1, 1), True)
        apps["Consultations"].request_consultation(patient, uuid4(), START, "check-up")
        # behind: two events of consultations' and registry's logs not applied yet
        desk.observe(metrics)
        position = lambda leader: metrics.sample(  # noqa: E731
            "clinic_projection_position", projection="consultation_detail", leader=leader)
        lag = lambda leader: metrics.sample(  # noqa: E731
            "clinic_projection_lag_events", projection="consultation_detail", leader=leader)
        assert (position("consultations"), lag("consultations"), lag("registry")) == (0, 1, 1)
        assert growing_lag(desk, metrics) > 0
        # caught up
        runner.catch_up()
        desk.observe(metrics)
        assert (position("consultations"), lag("consultations"), lag("registry")) == (1, 0, 0)
        assert metrics.sample("clinic_projection_lag_seconds", projection="consultation_detail") == 0
        assert metrics.sample("clinic_projection_quarantined_events", projection="consultation_detail") == 0
        assert {(s.labels["projection"], s.labels["leader"]) for family in metrics.projection_position.collect()
                for s in family.samples} == {(p.name, leader.lower()) for p in ALL_PROJECTIONS for leader in p.leaders}
    finally:
        for app in apps.values():
            app.close()


def growing_lag(desk: ReadModelDesk, metrics: Metrics) -> float:
    """The lag in seconds observed once it is above 0: the age of an event recorded a moment ago, in
    milliseconds (as the status shows it), may still be 0.000 at the first observation."""
    def observed() -> float:
        desk.observe(metrics)
        return float(metrics.sample("clinic_projection_lag_seconds", projection="consultation_detail"))

    return float(eventually(observed, timeout=5, what="the lag growing with the event's age"))


class RefusingWrites(MemoryViewStore):
    """A key store that answers reads and refuses writes (Redis at its memory limit)."""

    def apply(self, *args: object, **kwargs: object) -> bool:
        raise RuntimeError("OOM command not allowed when used memory > 'maxmemory'")


def test_the_lag_is_read_when_the_projections_cannot_write(metrics):
    apps = build_applications(Settings(persistence="memory"))
    runner = ProjectionRunner(apps, RefusingWrites(), ALL_PROJECTIONS)
    try:
        patient = apps["Registry"].register_patient("Ana", "ana@example.org", date(1990, 1, 1), True)
        apps["Consultations"].request_consultation(patient, uuid4(), START, "check-up")
        with pytest.raises(RuntimeError, match="OOM"):
            runner.catch_up()
        # the worker is stuck, and its gauges say how far behind it is (read, not told by the stuck loop)
        desk = ReadModelDesk(apps, runner.store)
        desk.observe(metrics)
        assert metrics.sample("clinic_projection_lag_events", projection="consultation_detail",
                              leader="consultations") == 1
        assert growing_lag(desk, metrics) > 0
    finally:
        for app in apps.values():
            app.close()


def test_a_scrape_waits_a_bounded_time_for_the_read_models_gauges_and_starts_one_observation_at_a_time():
    apps = build_applications(Settings(persistence="memory"))
    desk = ReadModelDesk(apps, MemoryViewStore())
    release, calls = threading.Event(), []

    class Stuck:
        def projection_progress(self, *args: object) -> None:
            calls.append(args)
            release.wait(10)

        def projection_lag(self, *args: object) -> None: ...

        def projection_quarantined_events(self, *args: object) -> None: ...

    async def two_scrapes() -> tuple[float, int]:
        started = time.monotonic()
        await desk.observed(Stuck(), timeout=0.05)
        await desk.observed(Stuck(), timeout=0.05)
        waited, observing = time.monotonic() - started, len(calls)
        release.set()
        return waited, observing

    try:
        waited, observing = asyncio.run(two_scrapes())
        assert waited < 1
        assert observing == 1  # the second scrape found the first observation still running
    finally:
        release.set()
        for app in apps.values():
            app.close()


def test_a_multiprocess_directory_must_exist(tmp_path):
    with pytest.raises(ValueError, match="PROMETHEUS_MULTIPROC_DIR"):
        Metrics("test", multiprocess_dir=str(tmp_path / "missing"))


def test_no_id_is_ever_a_label(clinic, metrics):
    patient, doctor = given_a_patient_and_an_open_slot(clinic)
    clinic.book(patient, doctor, START, "check-up")
    clinic.runner.wait_until_idle()
    exported = metrics.exposition()[0].decode()
    for identifier in (patient, doctor, slot_id_for(doctor, START)):
        assert str(identifier) not in exported
