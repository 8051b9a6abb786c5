"""The composition root of distributed mode: one context per service, linked by RabbitMQ.

``build_service`` gives the context's application (its tables made by ``clinic db
migrate``) inside a ``Clinic`` for the service's part of the API. ``Worker`` runs the
context's outbox relay, its follower consumer (if it follows anyone) and, for the
booking service, the saga timer. Both wait for their dependencies with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.system import Leader, RecordingEvent, RecordingEventReceiver

from application.bootstrap import (
    SUBSCRIPTIONS,
    SYSTEM,
    StoreNotReadyError,
    StoreUnavailableError,
    build_applications,
    build_auditor,
    configure_notifications,
    observe_with,
    read_models,
    redis_answers,
    require_tables,
)
from application.clinic import READ_MODELS_CHECK, Clinic
from application.contexts import BY_SERVICE, CONTEXTS
from application.notifications import NotificationsApplication
from application.settings import Settings, SettingsError
from infrastructure.leadership import Leadership, while_leading
from infrastructure.listen import CONNECTION_PARAMETERS, EventsListener
from infrastructure.messaging.attempts import PostgresDeliveryAttempts
from infrastructure.messaging.connection import BrokerConnection, BrokerError, BrokerTls, connect
from infrastructure.messaging.consumer import FollowerConsumer
from infrastructure.messaging.dlq import DeadLetterDesk
from infrastructure.messaging.permissions import BrokerPermissions, console_permissions, service_permissions
from infrastructure.messaging.relay import OutboxRelay
from infrastructure.messaging.topology import FollowerQueues, Topology, declare_own, declare_system
from infrastructure.observability.metrics import Metrics
from infrastructure.observability.queue_depth import QueueDepthSampler
from infrastructure.read_models.redis_store import RedisViewStore
from infrastructure.registry_client import HttpRegistryClient, RegistryCallPolicy
from infrastructure.resilience import Backoff
from infrastructure.security.scopes import Scope
from infrastructure.security.service_tokens import ClientCredentialsTokens, DevServiceTokens, ServiceTokens
from infrastructure.security.tokens import TokenIssuer, load_or_create_dev_key
from infrastructure.tls import Pki, ca_trust
from process_managers.booking import BookingProcessManager
from projections.catalog import ALL_PROJECTIONS
from projections.runner import ProjectionRunner

log = logging.getLogger(__name__)
T = TypeVar("T")

SERVES_QUERIES = frozenset(context.service for context in CONTEXTS if context.read_models)
"""Services whose part of the API answers from the read models (Redis, kept by ``clinic run projections``)."""


def build_service(service: str, settings: Settings, role: str = "all", metrics: Metrics | None = None) -> Clinic:
    """The service's context application, wired, inside a Clinic hosting only it.

    Readiness: the event store always; Redis when the role serves queries from the read models.
    The registry the booking saga calls is deliberately no readiness dependency (docs/observability-health.md).
    """
    # API replicas and the workers all write the store: no cache (a worker's batch loads its aggregates at once)
    apps = build_applications(settings, create_table=False, contexts=[BY_SERVICE[service]], serving=True)
    [app] = apps.values()
    require_tables(apps)
    observe_with(apps, metrics)
    if isinstance(app, BookingProcessManager):
        policy = RegistryCallPolicy(reset_timeout=settings.registry_breaker_reset_seconds)
        tokens = service_tokens(settings, "booking", Scope.REGISTRY_ELIGIBILITY)
        app.registry = HttpRegistryClient.from_pki(settings.registry_url, Pki.open(settings.pki, services=("booking",)), "booking",
                                                   policy=policy, tokens=tokens, on_state_change=_breaker(metrics))
        app.saga_timeout = settings.saga_timeout
    if isinstance(app, NotificationsApplication):
        configure_notifications(app, settings, metrics)
    queries, checks = None, {}
    if service in SERVES_QUERIES and role != "worker":
        views = _redis_views(settings, service)
        queries, checks = read_models(views, {app.name: app.recorder.max_notification_id}), {READ_MODELS_CHECK: redis_answers(views)}
    return Clinic.hosting(apps, auditor=build_auditor(apps), read_models=queries, checks=checks)


def _breaker(metrics: Metrics | None) -> Callable[..., None] | None:
    """The registry circuit's state listener: its state and transitions in ``metrics``."""
    if metrics is None:
        return None
    metrics.watch_breaker("registry")
    return metrics.breaker_changed


def service_tokens(settings: Settings, service: str, scope: str) -> ServiceTokens:
    """The service's own access tokens: client_credentials at ``CLINIC_OAUTH_TOKEN_URL``, else the dev key."""
    client_id = settings.client_id or service
    if settings.oauth_token_url:
        if not settings.client_secret:
            raise SettingsError("CLINIC_OAUTH_TOKEN_URL needs CLINIC_CLIENT_SECRET (or CLINIC_CLIENT_SECRET_FILE)")
        return ClientCredentialsTokens(settings.oauth_token_url, client_id, settings.client_secret, scope,
                                       verify=ca_trust(settings.auth_ca_file))
    issuer = TokenIssuer(load_or_create_dev_key(settings.data_dir), settings.jwt_issuer, settings.jwt_audience)
    return DevServiceTokens(issuer, client_id, scope)


def queue_bindings(settings: Settings) -> dict[tuple[str, str], tuple[str, ...]] | None:
    """Per (leader, follower) edge, the topics its queue binds (``None``: every event of each leader)."""
    return SUBSCRIPTIONS if settings.amqp_bindings == "handled" else None


def broker_topology(settings: Settings) -> Topology:
    """The names of this deployment's exchange and queues (``CLINIC_AMQP_PREFIX``, ``CLINIC_PARTITIONS``)."""
    return Topology(prefix=settings.amqp_prefix, partitions=settings.partitions)


def broker_users(settings: Settings, vhost: str = "/") -> dict[str, BrokerPermissions]:
    """Each service's broker user and the least it may do (its own queues, its own events, its leaders' keys),
    and the operations console's (the followers' dead letters)."""
    topology = broker_topology(settings)
    users = {context.service: service_permissions(topology, context.service, context.follows, vhost=vhost)
             for context in CONTEXTS}
    users["console"] = console_permissions(topology, [c.name for c in CONTEXTS if c.follows], vhost=vhost)
    return users


def dead_letter_desk(settings: Settings) -> DeadLetterDesk:
    """Every follower's dead letters, through a broker connection of the desk's own (the console's)."""
    topology = broker_topology(settings)
    return DeadLetterDesk(lambda: connect(settings.amqp_url, broker_tls(settings)),
                          {context.service: topology.queues(context.name) for context in CONTEXTS if context.follows})


def broker_tls(settings: Settings) -> BrokerTls:
    """The broker connection's TLS material (``CLINIC_AMQP_CA_FILE`` etc.; used with ``amqps://``)."""
    return BrokerTls(settings.amqp_ca_file, settings.amqp_cert_file, settings.amqp_key_file)


def build_projections(settings: Settings) -> tuple[ProjectionRunner, dict[str, Any]]:
    """The projection worker: every context's store read-only, the views in Redis."""
    one_reader = {"POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "1"}  # it reads one log at a time
    apps = build_applications(settings, create_table=False, env=one_reader, serving=True)
    require_tables(apps)
    runner = ProjectionRunner(apps, _redis_views(settings, "projections"), ALL_PROJECTIONS)
    return runner, apps


def _redis_views(settings: Settings, service: str) -> RedisViewStore:
    if not settings.redis_url:
        raise SettingsError(f"the {service} service needs CLINIC_REDIS_URL (its queries read the Redis views)")
    return RedisViewStore.from_url(settings.redis_url, prefix=settings.redis_prefix, **settings.redis_tls)


async def follow_projections(runner: ProjectionRunner, apps: dict[str, Any], stop: asyncio.Event,
                             poll_seconds: float = 0.05) -> None:
    """The projection worker's loop: catch up whenever a log has new events (PostgreSQL's ``NOTIFY``; a
    store that cannot tell is polled every ``poll_seconds``), until ``stop``. A failed catch-up is kept
    in ``runner.last_error`` (readiness) and tried again with backoff."""
    new_events = asyncio.Event()
    listener = EventsListener.for_apps(apps)
    listening = None
    if listener is not None:
        for name in apps:
            listener.on_new_events(name, new_events.set)
        listening = asyncio.create_task(listener.run(stop), name="listen for projections")
    backoff = Backoff()
    try:
        while not stop.is_set():
            new_events.clear()  # before reading: what is recorded meanwhile wakes the next round
            try:
                await asyncio.to_thread(runner.catch_up)
                runner.last_error, wait = None, None if listener is not None else poll_seconds
                backoff.reset()
            except Exception as error:  # noqa: BLE001 - keep following; the error is logged and kept
                runner.last_error, wait = error, backoff.next()
                log.exception("projection batch failed; retrying in %.1fs", wait)
            await _first_of(stop.wait(), new_events.wait(), _sleep(wait))
    finally:
        if listening is not None:
            await asyncio.gather(listening, return_exceptions=True)


async def with_backoff(what: str, attempt: Callable[[], Awaitable[T]], stop: asyncio.Event,
                       first: float = 0.2, most: float = 5.0) -> T | None:
    """Retry ``attempt`` with jittered exponential backoff until it succeeds or ``stop`` is set."""
    backoff = Backoff(first, most, jitter=True)
    while not stop.is_set():
        try:
            return await attempt()
        except (OSError, StoreNotReadyError, StoreUnavailableError, BrokerError) as error:
            log.warning("waiting for %s: %s (retrying in %.1fs)", what, error, backoff.delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=backoff.next())
    return None


class Worker:
    """Relays the context's events to the broker, feeds it the events it follows and, for booking, runs
    the saga timer; each wakes on a push (an in-process write, PostgreSQL's ``NOTIFY``, a delivery)."""

    def __init__(self, app: Any, settings: Settings, tick_seconds: float | None = None,
                 metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.settings = settings
        self.topology = broker_topology(settings)
        self.tick_seconds = tick_seconds or settings.runner_tick_seconds
        """How often a store that cannot push (no ``NOTIFY``) is polled, by the relay and the timer."""
        self.connection: BrokerConnection | None = None
        self.consumer: FollowerConsumer | None = None
        self.relaying = False
        self.leadership = leadership_of(app, settings, metrics)
        """Which of the context's workers relays and runs the timer, hearing the context's ``NOTIFY`` while
        it does (``None``: a store without advisory locks or ``NOTIFY``, which has one worker and is polled)."""
        self._prompts = Prompts()
        if isinstance(app, Leader):
            app.lead(self._prompts)  # what this process records is relayed at once
        if self.leadership is not None:
            self.leadership.on_notify(app.recorder.channel_name, self._prompts.prompt)  # and what others record

    @property
    def ready(self) -> bool:
        """Connected to the broker, consuming if it follows anyone, and relaying if it leads (the
        ``rabbitmq`` check: a worker standing by for the leadership is ready)."""
        connected = self.connection is not None and not self.connection.is_closed
        consuming = self.consumer is None or self.consumer.consuming
        leads = self.leadership is None or self.leadership.held.is_set()
        return connected and consuming and (self.relaying or not leads)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: relay, consume, time sagas out; then stop consuming, finish in-flight work, close.

        A lost broker connection is made again (with backoff) and the relay and consumer restart
        on it; any other failure stops the worker and the service (crash-only: the orchestrator
        restarts it).
        """
        self._prompts.bind(asyncio.get_running_loop())
        background = [task for task in (self._timer(stop), self._measure_queue_depths(stop), self._lead(stop))
                      if task is not None]
        try:
            await self._slotted(stop)
            while not stop.is_set():
                self.connection = await with_backoff(
                    "the broker", lambda: connect(self.settings.amqp_url, broker_tls(self.settings)), stop)
                if self.connection is None:
                    break
                try:
                    await self._while_connected(stop)
                finally:
                    await self.connection.close()
        except Exception as failed:
            stop.set()
            log.error("%s worker failed: %r", self.app.name, failed)
            raise
        finally:
            stop.set()
            await asyncio.gather(*background, return_exceptions=True)

    async def _while_connected(self, stop: asyncio.Event) -> None:
        """Consume and relay on ``self.connection`` until ``stop``, or until the connection is lost."""
        session = asyncio.Event()  # set when the worker stops or the connection is lost
        relay: asyncio.Task[None] | None = None
        try:
            await self._start()
            relay = asyncio.create_task(self._relay(session))
            await _first_of(stop.wait(), relay, self.connection.closing)
        except Exception as error:  # noqa: BLE001 - re-raised below unless the connection is gone
            if not self.connection.is_closed:
                raise
            log.debug("broker connection lost while starting: %r", error)
        session.set()
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await self.consumer.stop()  # on a lost connection: in-flight messages are redelivered
        if relay is not None:
            await asyncio.gather(relay, return_exceptions=True)
            if relay.exception() is not None and not self.connection.is_closed:
                raise relay.exception()
        if self.connection.is_closed and not stop.is_set():
            log.warning("%s worker lost the broker connection; reconnecting", self.app.name)

    def _lead(self, stop: asyncio.Event) -> asyncio.Task[None] | None:
        if self.leadership is None:
            return None
        return asyncio.create_task(self.leadership.run(stop), name=f"leadership {self.app.name}")

    async def _slotted(self, stop: asyncio.Event, seconds: float = 5.0) -> None:
        """Wait (bounded) to know this worker's slot, so it registers first on its own partitions."""
        if self.leadership is not None and self.topology.partitions > 1:
            await _first_of(self.leadership.slotted.wait(), stop.wait(), _sleep(seconds))

    def _preferred(self) -> set[str] | None:
        """The partitions this worker registers on first: those of its slot (``None``: all at once)."""
        queues = self.topology.queues(self.app.name)
        slot = None if self.leadership is None else self.leadership.slot
        if not queues.partitions or slot is None:
            return None
        return {queue for index, queue in enumerate(queues.partitions) if index % self.settings.workers == slot}

    def _measure_queue_depths(self, stop: asyncio.Event) -> asyncio.Task[None] | None:
        """With metrics: the depth of the follower's queue, retry queues and DLQ, every few seconds."""
        if self.metrics is None or self.app.name not in {follower for _, follower in SYSTEM.edges}:
            return None
        queues: FollowerQueues = self.topology.queues(self.app.name)
        sampler = QueueDepthSampler(self.metrics, [*queues.consumed, *queues.retries, queues.dead_letters])
        return asyncio.create_task(sampler.run(lambda: self.connection, stop))

    async def _start(self) -> None:
        # Every follower's queue exists before a relay publishes, so events published while a follower is
        # down or not yet started wait in its queue (services start in any order): declared here by each
        # worker (one broker user for all), or by ``clinic broker setup`` (a user per service).
        self.consumer = None
        channel = await self.connection.channel()
        if self.settings.amqp_declare == "system":
            queues = await declare_system(channel, self.topology, SYSTEM.edges, queue_bindings(self.settings))
        else:  # its own broker user: its own queues only (``clinic broker setup`` declared the rest)
            queues = await declare_own(channel, self.topology, self.app.name, SYSTEM.edges,
                                       queue_bindings(self.settings))
        if self.app.name in queues:
            self.consumer = FollowerConsumer(self.app, await self.connection.channel(), queues[self.app.name],
                                             metrics=self.metrics, attempts=PostgresDeliveryAttempts.of(self.app))
            await self.consumer.start(preferred=self._preferred())

    def _routed(self) -> set[str] | None:
        """The topics of this context's events that some queue takes (``None``: all of them)."""
        bindings = queue_bindings(self.settings)
        edges = [edge for edge in SYSTEM.edges if edge[0] == self.app.name]
        if bindings is None or any(edge not in bindings for edge in edges):
            return None  # some queue binds this context whole
        return {topic for edge in edges for topic in bindings[edge]}

    async def _relay(self, session: asyncio.Event) -> None:
        """The outbox relay on this connection, while this worker leads the context."""
        await while_leading(self.leadership, session, self._relay_until)

    async def _relay_until(self, until: asyncio.Event) -> None:
        """Relay until ``until``; an event store outage is waited out, not a crash."""
        poll = None if self.leadership is not None else min(self.tick_seconds, 0.2)
        relay = OutboxRelay(self.app, await self.connection.channel(), self.topology.exchange,
                            poll_interval=poll, metrics=self.metrics, topics=self._routed())
        self._prompts.relay = relay
        self.relaying = True
        backoff = Backoff()
        try:
            while not until.is_set():
                try:
                    await relay.run(until)
                except (OperationalError, InterfaceError) as error:
                    log.warning("relay: the event store failed (%s); retrying in %.1fs", error, backoff.delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(until.wait(), timeout=backoff.next())
        finally:
            self.relaying = False
            self._prompts.relay = None
            with contextlib.suppress(Exception):
                await relay.channel.close()

    def _timer(self, stop: asyncio.Event) -> asyncio.Task[None] | None:
        if not isinstance(self.app, TIMED):
            return None
        return asyncio.create_task(while_leading(self.leadership, stop, self._time), name=f"{self.app.name} timer")

    async def _time(self, stop: asyncio.Event) -> None:
        """The context's timer (while this worker leads): the sagas' deadlines and deferred validations, or
        the webhooks due, also those from before a restart. It sleeps until the next is due, or until new
        events of the context may have changed which one that is."""
        while not stop.is_set():
            self._prompts.timer.clear()  # before reading: a prompt during the read is not lost
            try:
                due = await asyncio.to_thread(self.app.tick)
                wait = None if due is None else max((due - self.app.clock()).total_seconds(), 0.0) + 0.01
            except Exception:  # noqa: BLE001 - the timer keeps going; the error is logged
                log.exception("%s timer failed; retrying", self.app.name)
                wait = self.tick_seconds
            if self.leadership is None:  # nothing pushes: poll
                wait = self.tick_seconds if wait is None else min(wait, self.tick_seconds)
            await _first_of(stop.wait(), self._prompts.timer.wait(), _sleep(wait))


TIMED = (BookingProcessManager, NotificationsApplication)
"""The contexts with a timer (``tick``): the leading worker runs it."""


def leadership_of(app: Any, settings: Settings, metrics: Metrics | None = None) -> Leadership | None:
    """The advisory lock the context's workers contend for, on the context's PostgreSQL database (``None``
    on other stores); named by the schema, so deployments sharing a database do not contend. With
    ``metrics``, ``clinic_worker_leading`` says which worker leads."""
    pool = getattr(getattr(app.recorder, "datastore", None), "pool", None)
    if pool is None or not hasattr(app.recorder, "channel_name"):
        return None
    schema = app.recorder.datastore.schema
    connection = {key: pool.kwargs[key] for key in CONNECTION_PARAMETERS if key in pool.kwargs}
    on_change = None if metrics is None else partial(metrics.leading, app.name)
    if metrics is not None:
        metrics.leading(app.name, False)  # the series exists from the start
    return Leadership(connection, f"clinic|{schema}|{app.name}", slots=settings.workers, on_change=on_change)


class Prompts(RecordingEventReceiver[Any]):
    """Wakes the relay and the saga timer when the application records events (from any thread), or
    when PostgreSQL says another process did."""

    def __init__(self) -> None:
        self.relay: OutboxRelay | None = None
        self.timer = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def receive_recording_event(self, new_recording_event: RecordingEvent[Any]) -> None:
        self.prompt()

    def prompt(self) -> None:
        if self.relay is not None:
            self.relay.prompt()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.timer.set)


async def _sleep(seconds: float | None) -> None:
    """``asyncio.sleep``, or forever (until cancelled) for ``None``."""
    if seconds is None:
        await asyncio.Event().wait()
    else:
        await asyncio.sleep(seconds)


async def _first_of(*awaitables: Awaitable[object]) -> None:
    """Wait until one of ``awaitables`` ends (the others are cancelled if they are our own tasks)."""
    waiting = [asyncio.ensure_future(a) for a in awaitables]
    _, pending = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    for future, awaitable in zip(waiting, awaitables, strict=True):
        if future in pending and future is not awaitable:
            future.cancel()
