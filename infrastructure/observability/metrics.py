"""Prometheus metrics: one ``Metrics`` object per process, built in the composition root.

Every instrument is created on the object's own ``CollectorRegistry`` (nothing at import
time), so tests read values in isolation and two ``Metrics`` never clash. The parts that
observe get the object (or one of its methods) passed in; without it they observe nothing.

Several processes behind one port (``PROMETHEUS_MULTIPROC_DIR`` set before the process
starts, as prometheus-client requires): every process writes its values to files in that
directory and ``exposition`` aggregates them all with a ``MultiProcessCollector``; gauges
say how to combine processes (``multiprocess_mode``). See docs/observability-metrics.md.

Label rules (ADR 0011): a route template, never a raw path; names of applications,
followers, queues, projections and reasons, never an id. One exception, bounded: the OAuth
``client_id`` of callers of deprecated operations (a verified claim naming a registered client,
at most ``MAX_DEPRECATED_API_CLIENTS`` per process; docs/deprecation.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from domain.values import RejectionReason

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SAGA_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
APPEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
"""``clinic_circuit_breaker_state`` values."""
BREAKER_TRANSITIONS = (("closed", "open"), ("open", "half_open"), ("half_open", "closed"), ("half_open", "open"))
SAGA_OUTCOMES = ("confirmed", "compensated", "cancelled")
RESCHEDULE_OUTCOMES = ("moved", "failed", "cancelled")
WEBHOOK_OUTCOMES = ("delivered", "retrying", "failed")
"""How a webhook attempt ends: the client took it, it will be tried again, or it was given up."""
UNMATCHED_ROUTE = "unmatched"
MultiprocessMode = Literal["all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent",
                           "livemostrecent"]
"""How a gauge is aggregated over processes (prometheus_client's ``multiprocess_mode``)."""
ACKED_OUTCOMES = frozenset({"processed", "duplicate"})
DEAD_LETTER_OUTCOMES = frozenset({"dead_lettered", "rejected"})
MAX_DEPRECATED_API_CLIENTS = 200
"""Distinct ``client_id`` labels on ``clinic_deprecated_api_requests_total`` per process; later ones count as
``other`` (client ids come from verified tokens: the authorization server's registered clients)."""
OTHER_CLIENTS = "other"


class Metrics:
    """The clinic's instruments for one process, labelled with its ``service`` name."""

    def __init__(self, service: str, multiprocess_dir: str | None = None) -> None:
        if multiprocess_dir is not None and not Path(multiprocess_dir).is_dir():
            raise ValueError(f"{MULTIPROCESS_DIR_VARIABLE}={multiprocess_dir} is not a directory")
        self.service = service
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        disable_created_metrics()  # no ``*_created`` series: they double the series and no query uses them
        self._http()
        self._messaging()
        self._sagas()
        self._resilience_and_read_side()
        self._deprecations()

    @classmethod
    def for_service(cls, service: str) -> Metrics:
        """The process's metrics; aggregated over processes when ``PROMETHEUS_MULTIPROC_DIR`` is set."""
        return cls(service, multiprocess_dir=os.environ.get(MULTIPROCESS_DIR_VARIABLE) or None)

    def _counter(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Counter:
        return Counter(name, help_text, ["service", *labels], registry=self.registry)

    def _gauge(self, name: str, help_text: str, labels: Iterable[str], mode: MultiprocessMode) -> Gauge:
        return Gauge(name, help_text, ["service", *labels], registry=self.registry, multiprocess_mode=mode)

    def _histogram(self, name: str, help_text: str, labels: Iterable[str], buckets: tuple[float, ...]) -> Histogram:
        return Histogram(name, help_text, ["service", *labels], registry=self.registry, buckets=buckets)

    def _http(self) -> None:
        self.http_requests = self._counter("clinic_http_requests_total", "HTTP requests answered, by route template "
                                           "and status", ["method", "route", "status"])
        self.http_duration = self._histogram("clinic_http_request_duration_seconds", "Time to answer an HTTP "
                                             "request, by route template", ["method", "route"], HTTP_BUCKETS)
        self.readiness_check = self._gauge("clinic_readiness_check", "1 while this process's readiness check "
                                           "passes, else 0, by check (a dependency, or accepting); evaluated "
                                           "when scraped", ["check"], "livemin")

    def _messaging(self) -> None:
        self.amqp_published = self._counter("clinic_amqp_published_total", "Events the outbox relay published and "
                                            "the broker confirmed, by the leader's log", ["application"])
        self.amqp_consumed = self._counter("clinic_amqp_consumed_total", "Messages a follower's consumer received",
                                           ["follower"])
        self.amqp_acked = self._counter("clinic_amqp_acked_total", "Messages processed (or known duplicates) and acked",
                                        ["follower"])
        self.amqp_retried = self._counter("clinic_amqp_retried_total", "Messages sent to a retry queue, by level "
                                          "(1 = the first delay)", ["follower", "level"])
        self.amqp_dead_lettered = self._counter("clinic_amqp_dead_lettered_total", "Messages moved to the "
                                                "dead-letter queue", ["follower"])
        self.amqp_queue_depth = self._gauge("clinic_amqp_queue_depth", "Messages ready in a queue (passive declare)",
                                            ["queue"], "livemostrecent")
        self.worker_leading = self._gauge("clinic_worker_leading", "1 while this worker leads its context (relays "
                                          "its events, runs its saga timer), else 0", ["application"], "livemax")

    def _sagas(self) -> None:
        self.sagas_started = self._counter("clinic_sagas_started_total", "Booking sagas started")
        self.sagas_confirmed = self._counter("clinic_sagas_confirmed_total", "Booking sagas that confirmed")
        self.sagas_compensated = self._counter("clinic_sagas_compensated_total", "Booking sagas compensated, by "
                                               "rejection reason", ["reason"])
        self.sagas_timed_out = self._counter("clinic_sagas_timed_out_total", "Booking sagas compensated because "
                                             "their deadline passed")
        self.sagas_cancelled = self._counter("clinic_sagas_cancelled_total", "Booking sagas stopped because the "
                                             "consultation was cancelled before they decided")
        self.reschedules = self._counter("clinic_reschedules_total", "Reschedule sagas ended: moved, failed (the "
                                         "consultation kept its start) or cancelled", ["outcome"])
        self.saga_duration = self._histogram("clinic_saga_duration_seconds", "From a saga's start to its end "
                                             "(event timestamps)", ["outcome"], SAGA_BUCKETS)
        self.webhook_attempts = self._counter("clinic_webhook_attempts_total", "Webhook delivery attempts, by "
                                              "outcome: delivered, retrying (failed, tried again) or failed (given up)",
                                              ["outcome"])
        self.webhook_duration = self._histogram("clinic_webhook_attempt_duration_seconds", "Time a webhook "
                                                "attempt waited for the client's answer", [], SAGA_BUCKETS)

    def _resilience_and_read_side(self) -> None:
        self.breaker_state = self._gauge("clinic_circuit_breaker_state", "Circuit state: 0 closed, 1 half-open, "
                                         "2 open", ["dependency"], "livemax")
        self.breaker_transitions = self._counter("clinic_circuit_breaker_transitions_total", "Circuit state "
                                                 "changes", ["dependency", "from_state", "to_state"])
        self.projection_position = self._gauge("clinic_projection_position", "The last notification id a "
                                               "projection applied from a leader's log", ["projection", "leader"],
                                               "livemostrecent")
        self.projection_lag_events = self._gauge("clinic_projection_lag_events", "Notifications of a leader's log "
                                                 "not yet applied", ["projection", "leader"], "livemostrecent")
        self.projection_lag_seconds = self._gauge("clinic_projection_lag_seconds", "Age of the oldest event not "
                                                  "yet applied (0 when caught up)", ["projection"], "livemostrecent")
        self.projection_quarantined = self._gauge("clinic_projection_quarantined_events", "Events a projection "
                                                  "quarantined (it raised on them) and no operator retried or "
                                                  "skipped yet", ["projection"], "livemostrecent")
        self.append_duration = self._histogram("clinic_event_store_append_duration_seconds", "Time to record new "
                                               "events (one transaction)", ["application"], APPEND_BUCKETS)
        self.appended_events = self._counter("clinic_event_store_appended_events_total", "Events recorded",
                                             ["application"])

    def _deprecations(self) -> None:
        self.deprecated_api_requests = self._counter("clinic_deprecated_api_requests_total", "Responses of "
                                                     "deprecated API operations, by operationId and the token's "
                                                     "client_id", ["operation", "client_id"])
        self._deprecated_api_clients: set[str] = set()

    # Observations -------------------------------------------------------------------------

    def readiness(self, checks: Mapping[str, bool]) -> None:
        """Each readiness check's result, as ``/health/ready`` just evaluated it."""
        for check, passed in checks.items():
            self.readiness_check.labels(self.service, check).set(1 if passed else 0)

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered HTTP request (``route`` is the template, or ``unmatched``)."""
        self.http_requests.labels(self.service, method, route, str(status)).inc()
        self.http_duration.labels(self.service, method, route).observe(seconds)

    def leading(self, application: str, leads: bool) -> None:
        """Whether this worker holds ``application``'s leadership now."""
        self.worker_leading.labels(self.service, application.lower()).set(1 if leads else 0)

    def published(self, application: str, count: int = 1) -> None:
        """``count`` events of ``application``'s log confirmed by the broker."""
        self.amqp_published.labels(self.service, application.lower()).inc(count)

    def follow(self, follower: str, retry_levels: int) -> None:
        """Make the consumer's series exist (at zero) before its first message."""
        follower = follower.lower()
        for counter in (self.amqp_consumed, self.amqp_acked, self.amqp_dead_lettered):
            counter.labels(self.service, follower)
        for level in range(1, retry_levels + 1):
            self.amqp_retried.labels(self.service, follower, str(level))

    def consumed(self, follower: str, outcome: str) -> None:
        """One message settled with ``outcome`` (``FollowerConsumer``'s outcome names)."""
        follower = follower.lower()
        self.amqp_consumed.labels(self.service, follower).inc()
        if outcome in ACKED_OUTCOMES:
            self.amqp_acked.labels(self.service, follower).inc()
        elif outcome in DEAD_LETTER_OUTCOMES:
            self.amqp_dead_lettered.labels(self.service, follower).inc()

    def retried(self, follower: str, level: int) -> None:
        """One message sent to retry queue ``level`` (1 = the shortest delay)."""
        self.amqp_retried.labels(self.service, follower.lower(), str(level)).inc()

    def queue_depth(self, queue: str, depth: int) -> None:
        self.amqp_queue_depth.labels(self.service, queue).set(depth)

    def start_sagas(self) -> None:
        """Make the saga series exist (at zero): every reason, both outcomes."""
        for counter in (self.sagas_started, self.sagas_confirmed, self.sagas_timed_out, self.sagas_cancelled):
            counter.labels(self.service)
        for reason in RejectionReason:
            self.sagas_compensated.labels(self.service, reason.value)
        for outcome in SAGA_OUTCOMES:
            self.saga_duration.labels(self.service, outcome)
        for outcome in RESCHEDULE_OUTCOMES:
            self.reschedules.labels(self.service, outcome)

    def saga_started(self) -> None:
        self.sagas_started.labels(self.service).inc()

    def saga_confirmed(self, seconds: float) -> None:
        self.sagas_confirmed.labels(self.service).inc()
        self.saga_duration.labels(self.service, "confirmed").observe(max(seconds, 0.0))

    def saga_compensated(self, reason: str, seconds: float) -> None:
        self.sagas_compensated.labels(self.service, reason).inc()
        self.saga_duration.labels(self.service, "compensated").observe(max(seconds, 0.0))

    def saga_timed_out(self) -> None:
        self.sagas_timed_out.labels(self.service).inc()

    def reschedule_ended(self, outcome: str) -> None:
        self.reschedules.labels(self.service, outcome).inc()

    def start_webhooks(self) -> None:
        """Make the webhook series exist (at zero): every outcome."""
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook_attempts.labels(self.service, outcome)

    def webhook_attempted(self, outcome: str, seconds: float) -> None:
        self.webhook_attempts.labels(self.service, outcome).inc()
        self.webhook_duration.labels(self.service).observe(max(seconds, 0.0))

    def saga_cancelled(self, seconds: float) -> None:
        self.sagas_cancelled.labels(self.service).inc()
        self.saga_duration.labels(self.service, "cancelled").observe(max(seconds, 0.0))

    def watch_breaker(self, dependency: str) -> None:
        """Make the breaker's series exist: closed, no transition yet."""
        self.breaker_state.labels(self.service, dependency).set(BREAKER_STATES["closed"])
        for old, new in BREAKER_TRANSITIONS:
            self.breaker_transitions.labels(self.service, dependency, old, new)

    def breaker_changed(self, dependency: str, old: str, new: str) -> None:
        """A ``CircuitBreaker`` state listener: ``(name, old state, new state)``."""
        old, new = str(old), str(new)
        self.breaker_state.labels(self.service, dependency).set(BREAKER_STATES[new])
        self.breaker_transitions.labels(self.service, dependency, old, new).inc()

    def projection_progress(self, projection: str, leader: str, position: int, lag_events: int) -> None:
        self.projection_position.labels(self.service, projection, leader.lower()).set(position)
        self.projection_lag_events.labels(self.service, projection, leader.lower()).set(lag_events)

    def projection_lag(self, projection: str, seconds: float) -> None:
        self.projection_lag_seconds.labels(self.service, projection).set(max(seconds, 0.0))

    def projection_quarantined_events(self, projection: str, count: int) -> None:
        self.projection_quarantined.labels(self.service, projection).set(count)

    def record_appends(self, application: str) -> None:
        """Make ``application``'s event store series exist (at zero)."""
        self.append_duration.labels(self.service, application.lower())
        self.appended_events.labels(self.service, application.lower())

    def appended(self, application: str, events: int, seconds: float) -> None:
        """``events`` recorded by ``application`` in one transaction that took ``seconds``."""
        self.append_duration.labels(self.service, application.lower()).observe(seconds)
        self.appended_events.labels(self.service, application.lower()).inc(events)

    def deprecated_request(self, operation: str, client_id: str) -> None:
        """One response of a deprecated operation to ``client_id`` (``anonymous`` without a verified token)."""
        if client_id not in self._deprecated_api_clients:
            if len(self._deprecated_api_clients) >= MAX_DEPRECATED_API_CLIENTS:
                client_id = OTHER_CLIENTS
            else:
                self._deprecated_api_clients.add(client_id)
        self.deprecated_api_requests.labels(self.service, operation, client_id).inc()

    # Exposition ---------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The text format (0.0.4) and its content type: this process's registry, or every process's files."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4

    def sample(self, name: str, **labels: str) -> float | None:
        """One sample's value in this process (``None`` if absent), with ``service`` filled in."""
        return self.registry.get_sample_value(name, {"service": self.service, **labels})
