"""The live observability tier: the distributed deployment, on private PostgreSQL, Redis and RabbitMQ servers
(so a test may stop one for real), watched by a real Prometheus (the committed
``clinic-local`` job, a file-based discovery of the processes, the ``rabbitmq-local`` job for the broker's own
metrics, the committed rules) and a real Alertmanager
(the committed routing, delivering to a receiver this test owns). Time is compressed twentyfold by an overlay of
the same rule files (``interfaces/local_deployment/observability.py``): a ``for: 5m`` lasts 15 s (the slow
burn-rate alerts' windows of hours and days are watched by a second stack compressed 720-fold).

Every alert a test provokes must reach the receiver it is routed to, with its labels, summary and runbook
link, and resolve after the repair; every panel of every committed dashboard must return series after
load. The deployment and the stack start once for the module."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from redis import Redis

from infrastructure.messaging.topology import Topology
from interfaces.local_deployment.deployment import deployed
from interfaces.local_deployment.observability import AlertReceiver, ObservabilityStack, Overlay
from interfaces.local_deployment.private_servers import PrivateServers, private_servers
from interfaces.local_deployment.servers import DeploymentError
from tests import services
from tests.e2e.distributed.bookings import book, publish_poison, settled, setup
from tests.e2e.distributed.conftest import Cluster, eventually
from tests.private_servers import missing

DASHBOARDS = Path(__file__).resolve().parents[3] / "deployment" / "grafana" / "dashboards"
ALERTS_DOC = "docs/observability-alerts.md"
FIRING_SECONDS = 90.0
"""Upper bound for a provoked condition to reach the receiver (scrape, rule windows, for:, grouping)."""


class Watched:
    def __init__(self, cluster: Cluster, servers: PrivateServers, stack: ObservabilityStack,
                 receiver: AlertReceiver) -> None:
        self.cluster, self.servers, self.stack, self.receiver = cluster, servers, stack, receiver


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    for needed in ("prometheus", "prometheus-alertmanager", "nginx"):
        services.require_binary(needed)
    with contextlib.ExitStack() as running:
        try:
            servers = running.enter_context(private_servers(broker_metrics=True))
        except DeploymentError as error:
            missing(str(error))
            raise
        cluster = running.enter_context(deployed(tmp_path_factory.mktemp("cluster"), servers.servers, tracing=False))
        receiver = AlertReceiver().start()
        running.callback(receiver.stop)
        stack = ObservabilityStack(tmp_path_factory.mktemp("observability"), receiver, Overlay())
        running.callback(stack.stop)
        stack.start(cluster.ports, servers.rabbitmq.metrics_port)
        yield Watched(cluster, servers, stack, receiver)


def test_every_process_is_scraped_by_the_committed_job_with_the_pods_labels(watched):
    wanted = set(watched.cluster.ports)

    def all_up() -> list[dict[str, Any]] | None:
        up = watched.stack.query('up{job="clinic-local"}')
        return up if {series["metric"]["pod"] for series in up if series["value"][1] == "1"} == wanted else None

    up = eventually(all_up, timeout=30, what="every process scraped")
    assert {series["metric"]["app"] for series in up} == {f"clinic-{name}" for name in wanted}
    # and the broker's own metrics: each follower's queue, with its consumers
    queue = Topology(prefix=watched.cluster.prefix).queues("Scheduling").main
    eventually(lambda: watched.stack.query(f'rabbitmq_detailed_queue_consumers{{job="rabbitmq-local", queue="{queue}"}} == 1'),
               timeout=30, what="the broker's metrics scraped")
    assert not watched.stack.query("count by (service) ({__name__=~'clinic_.+', exported_service!=''})")


def assert_delivered(receiver: AlertReceiver, alert: str, status: str, routed_to: str, since: int = 0,
                     **labels: str) -> list[dict[str, Any]]:
    """The alerts named ``alert`` with ``labels`` the receiver ``routed_to`` (and no other) was told with
    ``status`` (in notification ``since`` or later: what a test provoked, not an earlier test), each with its
    severity, summary, description and runbook link."""
    def told() -> list[tuple[str, dict[str, Any]]]:
        return [(name, one) for name, one in receiver.alerts(alert, status, since)
                if labels.items() <= one["labels"].items()]

    delivered = eventually(told, timeout=FIRING_SECONDS, what=f"{alert} {labels} {status}")
    assert {name for name, _ in delivered} == {routed_to}, (alert, delivered)
    for _, one in delivered:
        assert one["labels"]["severity"] in ("critical", "warning")
        assert one["annotations"]["summary"] and one["annotations"]["description"]
        assert one["annotations"]["runbook_url"] == f"{ALERTS_DOC}#{alert.lower()}"
    return [one for _, one in delivered]


def test_a_poison_message_fires_the_dead_letter_alerts_and_purging_it_resolves_them(watched):
    asyncio.run(publish_poison(watched.cluster.prefix, "poison-alert", watched.servers.servers.amqp_url))
    eventually(lambda: json.loads(watched.cluster.clinic("dlq", "list", "booking", "--json")),
               what="the poison dead-lettered")
    # booking's follower dead-letters it (and notifications', which follows consultations' events too)
    assert_delivered(watched.receiver, "ClinicMessagesDeadLettered", "firing", "tickets", follower="booking")
    queue = Topology(prefix=watched.cluster.prefix).queues("Booking").dead_letters
    assert_delivered(watched.receiver, "ClinicDeadLetterQueueNotEmpty", "firing", "tickets", queue=queue)
    # when the operator purges it
    assert "purged 1 message(s)" in watched.cluster.clinic("dlq", "purge", "booking", "--yes")
    assert_delivered(watched.receiver, "ClinicDeadLetterQueueNotEmpty", "resolved", "tickets", queue=queue)
    assert_delivered(watched.receiver, "ClinicMessagesDeadLettered", "resolved", "tickets", follower="booking")


class Steady:
    """``call(n)`` (an HTTP status) about ten times a second on a thread, until stopped: the load a test keeps
    on while it breaks something."""

    def __init__(self, call: Callable[[int], int]) -> None:
        self.call = call
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady load", daemon=True)

    def __enter__(self) -> Steady:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(20)

    def _run(self) -> None:
        for number in itertools.count():
            if self._stop.wait(0.1):
                return
            self.statuses.append(self.call(number))


def reads(cluster: Cluster, admin: str, paths: list[str]) -> Steady:
    """Reads of ``paths`` in turn through the gateway."""
    return Steady(lambda number: cluster.call("GET", paths[number % len(paths)], admin)[0])


@pytest.fixture(scope="module")
def booked(watched: Watched) -> tuple[str, list[str]]:
    """An admin's token and the paths of three settled consultations."""
    admin, patients, doctor, starts = setup(watched.cluster, patients=3, starts=3)
    accepted = [book(watched.cluster, admin, patient, doctor, start)
                for patient, start in zip(patients, starts, strict=True)]
    for booking in accepted:
        settled(watched.cluster, admin, booking["consultation_id"])
    return admin, [f"/v1/consultations/{booking['consultation_id']}" for booking in accepted]


def test_the_read_models_store_down_answers_503s_that_fire_the_error_alerts_which_resolve_after_the_repair(
        watched, booked):
    admin, paths = booked
    with reads(watched.cluster, admin, paths) as reading:
        eventually(lambda: reading.statuses.count(200) > 10, what="reads answered")
        watched.servers.redis.stop()  # the consultations API answers its reads 503 (its commands are served)
        try:
            ratio = assert_delivered(watched.receiver, "ClinicHttp5xxRatioHigh", "firing", "tickets",
                                     service="consultations")
            burning = assert_delivered(watched.receiver, "ClinicErrorBudgetBurnFast", "firing", "pager",
                                       service="consultations")
        finally:
            watched.servers.redis.start()
        assert 503 in reading.statuses and ratio and burning
        assert_delivered(watched.receiver, "ClinicHttp5xxRatioHigh", "resolved", "tickets", service="consultations")
        assert_delivered(watched.receiver, "ClinicErrorBudgetBurnFast", "resolved", "pager", service="consultations")
        assert reading.statuses[-1] != 503  # the outage is over (the views come back as the worker catches up)


def test_the_slow_and_steady_budget_burns_fire_and_resolve_with_their_windows_compressed_further(
        watched, booked, tmp_path):
    """Their windows (6 h and 3 days) are hours even at twentyfold: a second Prometheus and Alertmanager watch
    the same processes with the same files compressed 720-fold (6 h become 30 s, 3 days 6 minutes, a
    ``for: 1h`` 5 s; scrape and evaluation every 200 ms), while the read models' store is stopped under reads."""
    admin, paths = booked
    receiver = AlertReceiver().start()
    stack = ObservabilityStack(tmp_path / "compressed", receiver,
                               Overlay(speedup=720, scrape_interval="200ms", evaluation_interval="200ms"))
    try:
        stack.start(watched.cluster.ports, watched.servers.rabbitmq.metrics_port)
        with reads(watched.cluster, admin, paths) as reading:
            eventually(lambda: stack.query('clinic:sli_events:rate3d{service="consultations"} > 0'), timeout=30,
                       what="the 3-day window holding the reads")
            watched.servers.redis.stop()
            try:
                assert_delivered(receiver, "ClinicErrorBudgetBurnSlow", "firing", "pager", service="consultations")
                assert_delivered(receiver, "ClinicErrorBudgetBurnSteady", "firing", "tickets",
                                 service="consultations")
            finally:
                watched.servers.redis.start()
            assert 503 in reading.statuses
            assert_delivered(receiver, "ClinicErrorBudgetBurnSlow", "resolved", "pager", service="consultations")
            assert_delivered(receiver, "ClinicErrorBudgetBurnSteady", "resolved", "tickets", service="consultations")
    finally:
        stack.stop()
        receiver.stop()


def test_the_registry_down_opens_the_breaker_and_times_bookings_out_all_alerted_then_resolved(watched):
    cluster = watched.cluster
    admin, patients, doctor, starts = setup(cluster, patients=3, starts=3)
    assert cluster.stop("registry") == 0
    try:
        waiting = [book(cluster, admin, patient, doctor, start)
                   for patient, start in zip(patients[:2], starts[:2], strict=True)]
        opened = assert_delivered(watched.receiver, "ClinicCircuitBreakerOpen", "firing", "pager", service="booking")
        assert opened[0]["labels"]["dependency"]
        assert_delivered(watched.receiver, "ClinicSagasTimingOut", "firing", "tickets", service="booking")
        assert {settled(cluster, admin, one["consultation_id"])["status"] for one in waiting} == {"REJECTED"}
        # every booking decided in the (compressed) window was compensated
        assert_delivered(watched.receiver, "ClinicSagaCompensationRatioHigh", "firing", "tickets", service="booking")
    finally:
        cluster.start("registry")
    # after the repair the next booking's call is the breaker's trial: it succeeds, and the breaker closes
    after = book(cluster, admin, patients[2], doctor, starts[2])
    assert settled(cluster, admin, after["consultation_id"])["status"] == "CONFIRMED"
    assert_delivered(watched.receiver, "ClinicCircuitBreakerOpen", "resolved", "pager", service="booking")
    assert_delivered(watched.receiver, "ClinicSagasTimingOut", "resolved", "tickets", service="booking")
    assert_delivered(watched.receiver, "ClinicSagaCompensationRatioHigh", "resolved", "tickets", service="booking")


def test_the_database_stopped_turns_readiness_red_on_every_service_alerted_then_resolved(watched):
    services = ("booking", "consultations", "registry", "scheduling")  # each keeps its context's store there
    watched.servers.postgres.stop()
    try:
        for service in services:  # one notification per service: grouped by alert and service
            assert_delivered(watched.receiver, "ClinicServiceNotReady", "firing", "pager", check="postgres",
                             service=service)
    finally:
        watched.servers.postgres.start()
    for service in services:
        assert_delivered(watched.receiver, "ClinicServiceNotReady", "resolved", "pager", check="postgres",
                         service=service)


def test_the_projection_worker_stopped_fires_its_alert_and_resolves_once_it_runs_again(watched):
    assert watched.cluster.stop("projections") == 0  # SIGTERM: it drains and exits
    try:
        down = assert_delivered(watched.receiver, "ClinicProjectionWorkerDown", "firing", "pager")
        assert down[0]["labels"]["service"] == "projections"
    finally:
        watched.cluster.start("projections", "projections", "worker")  # the same port: the same target
    assert_delivered(watched.receiver, "ClinicProjectionWorkerDown", "resolved", "pager")


def test_the_key_store_refusing_writes_leaves_the_read_models_behind_alerted_then_resolved(watched):
    cluster = watched.cluster
    admin, [patient], doctor, [start] = setup(cluster)
    eventually(lambda: cluster.call("GET", f"/v1/patients/{patient}", admin)[0] == 200, what="the patient's view")
    redis, since = Redis.from_url(watched.servers.redis.url), len(watched.receiver.notifications)
    redis.config_set("maxmemory-policy", "noeviction")
    redis.config_set("maxmemory", 1)  # at its memory limit: reads answer, every write is refused
    try:
        booking = book(cluster, admin, patient, doctor, start)  # commands go on: nothing they do needs Redis
        behind = assert_delivered(watched.receiver, "ClinicProjectionLagHigh", "firing", "tickets", since,
                                  projection="consultation_detail")
        assert behind[0]["labels"]["service"] == "projections"
        # the worker's own readiness says its last batch failed
        assert_delivered(watched.receiver, "ClinicServiceNotReady", "firing", "pager", since, service="projections",
                         check="projections")
        assert cluster.call("GET", f"/v1/consultations/{booking['consultation_id']}", admin)[0] == 404  # stale
    finally:
        redis.config_set("maxmemory", 0)
        redis.close()
    assert settled(cluster, admin, booking["consultation_id"])["status"] == "CONFIRMED"
    assert_delivered(watched.receiver, "ClinicProjectionLagHigh", "resolved", "tickets", since,
                     projection="consultation_detail")
    assert_delivered(watched.receiver, "ClinicServiceNotReady", "resolved", "pager", since, service="projections")


def test_the_scheduling_worker_stopped_leaves_its_queue_unconsumed_and_bookings_timing_out_alerted_then_resolved(
        watched):
    """Its own metrics stop with it: the broker's see its queue fill (here the worker shares its process with
    the scheduling API, as ``clinic run scheduling`` does by default)."""
    cluster, since = watched.cluster, len(watched.receiver.notifications)
    admin, patients, doctor, starts = setup(cluster, patients=2, starts=2)
    queue = Topology(prefix=cluster.prefix).queues("Scheduling").main
    assert cluster.stop("scheduling") == 0
    try:
        waiting = book(cluster, admin, patients[0], doctor, starts[0])
        assert_delivered(watched.receiver, "ClinicQueueNotConsumed", "firing", "pager", since, queue=queue,
                         service="scheduling")
        assert_delivered(watched.receiver, "ClinicSagasTimingOut", "firing", "tickets", since, service="booking")
        assert settled(cluster, admin, waiting["consultation_id"])["status"] == "REJECTED"
    finally:
        cluster.start("scheduling")
    after = book(cluster, admin, patients[1], doctor, starts[1])
    assert settled(cluster, admin, after["consultation_id"])["status"] == "CONFIRMED"
    assert_delivered(watched.receiver, "ClinicQueueNotConsumed", "resolved", "pager", since, queue=queue)
    # (ClinicSagasTimingOut resolving, once its window has passed, is proven with the registry stopped)


def test_an_event_the_worker_cannot_read_is_quarantined_alerted_and_resolved_once_skipped(watched):
    """A newer writer records an event under a topic this worker's code does not know (a rolling upgrade in
    the wrong order): each read model of that log quarantines it and moves on, until an operator decides."""
    schema = watched.cluster.env["POSTGRES_SCHEMA"]
    with psycopg.connect(watched.servers.servers.postgres_conninfo(), autocommit=True) as connection:
        with connection.transaction():  # as the library records: the table locked, so ids commit in order
            table = sql.Identifier(schema, "consultations_events")
            connection.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(table))
            connection.execute(sql.SQL("INSERT INTO {} (originator_id, originator_version, topic, state) "
                                       "VALUES (%s, 1, %s, %s)").format(table),
                               (uuid.uuid4(), "domain.consultation:Consultation.Annotated", b"{}"))
            connection.execute(sql.SQL("NOTIFY {}").format(sql.Identifier("consultations_events")))
    quarantined = assert_delivered(watched.receiver, "ClinicProjectionEventsQuarantined", "firing", "tickets",
                                   projection="consultation_detail")
    assert quarantined[0]["labels"]["service"] == "projections"
    listed = json.loads(watched.cluster.clinic("projections", "errors", "--json"))
    assert "consultation_detail" in json.dumps(listed)
    # the operator decides the views go without it
    watched.cluster.clinic("projections", "skip", "--all", "--yes")
    assert_delivered(watched.receiver, "ClinicProjectionEventsQuarantined", "resolved", "tickets",
                     projection="consultation_detail")


def test_slow_appends_to_an_event_store_fire_their_alert_which_resolves_once_they_are_quick_again(watched):
    """Every append to the registry's store waits 300 ms (a trigger: the database answering slowly) while
    patients register."""
    cluster, admin = watched.cluster, watched.cluster.token("ops-1", "ADMIN")
    schema = watched.cluster.env["POSTGRES_SCHEMA"]
    table, slowly = sql.Identifier(schema, "registry_events"), sql.Identifier(schema, "slowly")
    patient = {"name": "Slow", "email": "slow@example.org", "birth_date": "1990-01-01", "consent": True}
    with psycopg.connect(watched.servers.servers.postgres_conninfo(), autocommit=True) as connection, \
            Steady(lambda _: cluster.call("POST", "/v1/patients", admin, patient)[0]) as registering:
        connection.execute(sql.SQL("CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS "
                                   "'BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END'").format(slowly))
        connection.execute(sql.SQL("CREATE TRIGGER slowly BEFORE INSERT ON {} FOR EACH STATEMENT "
                                   "EXECUTE FUNCTION {}()").format(table, slowly))
        try:
            slow = assert_delivered(watched.receiver, "ClinicEventStoreAppendSlow", "firing", "tickets",
                                    application="registry")
            assert slow[0]["labels"]["service"] == "registry"
        finally:
            connection.execute(sql.SQL("DROP TRIGGER slowly ON {}").format(table))
            connection.execute(sql.SQL("DROP FUNCTION {}()").format(slowly))
        assert_delivered(watched.receiver, "ClinicEventStoreAppendSlow", "resolved", "tickets",
                         application="registry")
    assert set(registering.statuses) == {201}


def panel_queries() -> list[tuple[str, str, str]]:
    """``(dashboard, panel, PromQL)`` of every panel, the dashboard's variables filled as Grafana would
    with "All" chosen, and its built-ins for a 1 s scrape interval over the last 10 minutes."""
    queries = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$__rate_interval", "15s").replace("$__interval", "1s").replace(
                    "$__range", "10m")
                queries.append((dashboard["title"], panel["title"], re.sub(r"\$\{?service\}?", ".*", expr)))
    return queries


def test_every_dashboard_panel_answers_with_series_over_the_modules_history(watched, booked):
    """Last in the module: the dashboards' time range covers the load, the poison message and the outage of
    the tests above (Grafana draws a panel from a range query over its time range, as this asks)."""
    admin, _ = booked
    assert watched.cluster.call("GET", f"/v1/consultations/{uuid.uuid4()}", admin)[0] == 404  # a 4xx too
    eventually(lambda: watched.stack.query("clinic:http_requests:rate5m"), timeout=30, what="the recording rules")
    silent = [(dashboard, panel, expr) for dashboard, panel, expr in panel_queries()
              if not watched.stack.query_range(expr, minutes=10)]
    assert not silent, "panels with no data: " + "; ".join(f"{d} / {p}: {e}" for d, p, e in silent)
