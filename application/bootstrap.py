"""The composition root: the HTTP app, the CLI and the tests all build the clinic here."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore

from application.audit import Auditor
from application.clinic import READ_MODELS_CHECK, Clinic
from application.contexts import BY_SERVICE, CONTEXTS, BoundedContext, audited_kinds, records_of, system_of
from application.group_commit import GroupCommit
from application.notifications import NotificationsApplication
from application.personal_data import load_or_create_dev_key, mapper_factory, open_subject_keys
from application.read_model_desk import ReadModelDesk
from application.read_models import ReadModels
from application.registry import RegistryApplication
from application.runner import EmbeddedRunner, TimerThread
from application.settings import Settings, SettingsError
from application.subscriptions import event_classes, handled_topics
from application.view_changes import ViewChanges
from domain.personal_data import personal_fields
from domain.webhooks import DeliverySchedule
from infrastructure import database_roles
from infrastructure.event_chain import PostgresEventChain
from infrastructure.messaging.attempts import PostgresDeliveryAttempts
from infrastructure.observability.metrics import Metrics
from infrastructure.outages import explain, is_outage, permanent
from infrastructure.personal_data.keys import KeyEncryptionKey
from infrastructure.read_models.redis_store import RedisViewStore
from infrastructure.webhooks import HttpWebhookSender
from process_managers.booking import BookingProcessManager
from projections.catalog import ALL_PROJECTIONS
from projections.memory_store import MemoryViewStore
from projections.runner import ProjectionRunner
from projections.store import ViewStore

SYSTEM = system_of(CONTEXTS)
"""Who follows whom: the saga follows consultations and scheduling, which follow the saga."""

RECORDS: dict[str, tuple[type, ...]] = records_of(CONTEXTS)
"""The aggregates whose events each context records, by application name."""

DEV_WEBHOOK_KEY_FILE = "webhook-key"
WEBHOOK_KEY_BYTES = 32

SUBSCRIPTIONS = handled_topics(SYSTEM, RECORDS)
"""Per ``(leader, follower)``: the topics the follower's policy handles; its queue binds only these."""


class StoreNotReadyError(RuntimeError):
    """An event store answers but cannot serve as configured (its tables are missing: run ``clinic db
    migrate``; it refuses our login): retrying alone does not mend it."""


class StoreUnavailableError(RuntimeError):
    """An event store cannot be reached now (down, refusing connections, timing out): retry later."""


def build_applications(settings: Settings, create_table: bool | None = None, cache: bool = False, *,
                       contexts: Iterable[BoundedContext] = CONTEXTS,
                       env: Mapping[str, str] | None = None, serving: bool = False) -> dict[str, Any]:
    """The eventsourcing application of each of ``contexts`` (every context, embedded; one, in a service),
    each with its own store and all sharing one key store. With ``cache`` (this process is their stores'
    only writer) the contexts ``cached`` names keep the aggregates they load; ``env`` adds to each store's
    settings; ``serving`` (a long-running process) forgets a data key as soon as its subject is erased."""
    if settings.persistence == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    contexts = tuple(contexts)
    sealing = mapper_factory(open_subject_keys(settings, create_table, watch=serving)) \
        if needs_data_keys(contexts) else None  # no KEK, no key store: nothing of theirs is personal
    apps = {}
    for cls in (context.application for context in contexts):
        store = settings.eventsourcing_env(cls.name, create_table, cache and cached(cls.name)) | dict(env or {})
        try:
            apps[cls.name] = cls(env=store, mapper_factory=sealing)
        except Exception as error:  # noqa: BLE001 - reported with the cause and the fix
            for app in apps.values():
                app.close()
            raise store_error(f"the {cls.name} event store", error, store) from error
    for app in apps.values():
        group_commits(app, settings)
    return apps


def cached(name: str) -> bool:
    """Whether context ``name`` may keep aggregates in memory: a follower (whose batches load them again and
    again) whose aggregates hold no personal data (a decrypted aggregate kept in memory would outlive the
    patient's erasure: crypto-shredding forgets only keys)."""
    return name in SYSTEM.followers and not holds_personal_data(name)


def needs_data_keys(contexts: Iterable[BoundedContext]) -> bool:
    """Whether any of ``contexts`` seals personal data, or follows a context that does (its policy decodes
    those events): only then does a process need the data key-encryption key and the key store."""
    return any(holds_personal_data(context.name) or
               any(holds_personal_data(BY_SERVICE[leader].name) for leader in context.follows)
               for context in contexts)


def holds_personal_data(name: str) -> bool:
    """Whether an event of an aggregate context ``name`` records has a personal field."""
    return any(personal_fields(event) for aggregate in RECORDS[name] for event in event_classes(aggregate))


def group_commits(app: Any, settings: Settings) -> None:
    """With ``CLINIC_GROUP_COMMIT=on``, concurrent saves to ``app`` share transactions."""
    if settings.group_commit:
        app.group_commit = GroupCommit(app)


def migrate(settings: Settings, roles: str | None = None) -> list[str]:
    """Create every context's tables (idempotent) and, with ``roles`` (a role name prefix), each
    context's database role and the projection worker's, with their grants. Returns the contexts migrated."""
    apps = build_applications(settings, create_table=True)
    try:
        positions = {app.name: _create_tables(app) for app in apps.values()}
        if roles:
            grant_roles(apps, [context_tables(app, positions[app.name]) for app in apps.values()], roles)
    finally:
        for app in apps.values():
            app.close()
    return list(apps)


def _create_tables(app: Any) -> Any:
    """The tables beside ``app``'s events (and the chain's triggers); its relay's tracking recorder."""
    positions = app.factory.tracking_recorder()  # the outbox relay keeps its position there
    attempts = PostgresDeliveryAttempts.of(app)  # a follower's consumer counts redeliveries there
    if attempts is not None:
        attempts.create_table()
    chain = PostgresEventChain.of(app)  # each event's hash chained to its predecessor's
    if chain is not None:
        chain.install()
    return positions


def context_tables(app: Any, positions: Any) -> database_roles.ContextTables:
    """What context ``app`` stores (``positions``: its relay's tracking recorder) and does with personal data."""
    context = next(context for context in CONTEXTS if context.name == app.name)
    return database_roles.ContextTables(
        context.service, app.name, app.recorder.events_table_name, positions.tracking_table_name,
        follower=app.name in SYSTEM.followers, keys=needs_data_keys([context]),
        personal=holds_personal_data(app.name), erases=context.erases)


def database_roles_of(prefix: str) -> dict[str, str]:
    """Each service's login role, and the projection worker's (``projections``), for role prefix ``prefix``."""
    services = [*(context.service for context in CONTEXTS), database_roles.PROJECTIONS]
    return {service: database_roles.role_name(prefix, service) for service in services}


def grant_roles(apps: Mapping[str, Any], tables: list[database_roles.ContextTables], prefix: str) -> None:
    """Each context's role and the projection worker's, granted in the events' schema (PostgreSQL only)."""
    datastore = getattr(next(iter(apps.values())).recorder, "datastore", None)
    if not isinstance(datastore, PostgresDatastore):
        raise database_roles.RolesError("database roles need CLINIC_PERSISTENCE=postgres")
    with datastore.transaction(commit=True) as cursor:
        database_roles.apply(cursor, datastore.schema, database_roles.plan(prefix, tables, PostgresDeliveryAttempts.TABLE))


def bootstrap(settings: Settings | None = None, clock: Callable[[], datetime] | None = None,
              metrics: Metrics | None = None) -> Clinic:
    """Build and start the clinic: applications, saga wiring, runner (observed by ``metrics`` if given)."""
    settings = settings or Settings.from_env()
    apps = build_applications(settings, cache=True, serving=True)  # this process is their stores' only writer
    require_tables(apps)
    observe_with(apps, metrics)
    registry: RegistryApplication = apps[RegistryApplication.name]
    booking: BookingProcessManager = apps[BookingProcessManager.name]
    booking.registry = registry
    booking.saga_timeout = settings.saga_timeout
    notifications: NotificationsApplication = apps[NotificationsApplication.name]
    configure_notifications(notifications, settings, metrics)
    if clock is not None:
        for app in apps.values():
            app.clock = clock
    projections = ProjectionRunner(apps, view_store(settings), ALL_PROJECTIONS)
    webhooks = TimerThread("clinic-webhooks", notifications.tick, notifications.clock)
    webhooks.watch(notifications)
    runner = EmbeddedRunner(SYSTEM, apps, settings.runner_tick_seconds, on_tick=booking.tick,
                            catch_up=projections.catch_up, topics=SUBSCRIPTIONS, timers=[webhooks])
    runner.start()
    reads = read_models(projections.store, {name: partial(runner.head, name) for name in apps})
    checks = {READ_MODELS_CHECK: redis_answers(projections.store)} if isinstance(projections.store, RedisViewStore) else {}
    return Clinic.hosting(apps, runner=runner, auditor=build_auditor(apps), read_models=reads, checks=checks,
                         read_model_desk=ReadModelDesk(apps, projections.store))


def configure_notifications(app: NotificationsApplication, settings: Settings, metrics: Metrics | None = None) -> None:
    """The webhook context's key, sender, schedule and rules, from ``settings``."""
    app.signing_key = webhook_signing_key(settings)
    app.sender = HttpWebhookSender(settings.webhook_timeout_seconds, settings.webhook_allow_private_networks)
    app.schedule = DeliverySchedule(first_delay=timedelta(seconds=settings.webhook_retry_seconds))
    app.allow_http = settings.webhook_allow_http
    if metrics is not None:
        app.observer = metrics
        metrics.start_webhooks()


def webhook_signing_key(settings: Settings) -> bytes:
    """``CLINIC_WEBHOOK_KEY`` (or ``_FILE``); else, for development, one generated into the data dir."""
    text = settings.webhook_key
    if text is None:
        text = KeyEncryptionKey.generate_text() if settings.persistence == "memory" else \
            load_or_create_dev_key(settings.data_dir, DEV_WEBHOOK_KEY_FILE)
    try:
        key = base64.urlsafe_b64decode(text.strip())
    except (ValueError, binascii.Error):
        raise SettingsError("CLINIC_WEBHOOK_KEY: 32 bytes in URL-safe base64") from None
    if len(key) != WEBHOOK_KEY_BYTES:
        raise SettingsError(f"CLINIC_WEBHOOK_KEY: {WEBHOOK_KEY_BYTES} bytes, not {len(key)}")
    return key


def redis_answers(views: RedisViewStore) -> Callable[[], bool]:
    """The readiness check of the read models' Redis: a ``PING`` on the store's own client (and pool)."""
    return lambda: bool(views.client.ping())


def observe_with(apps: dict[str, Any], metrics: Metrics | None) -> None:
    """Every application's appends, and the booking sagas, observed by ``metrics`` (nothing if None)."""
    if metrics is None:
        return
    for app in apps.values():
        app.store_observer = metrics
        metrics.record_appends(app.name)
        if isinstance(app, BookingProcessManager):
            app.saga_observer = metrics
            metrics.start_sagas()


def read_models(store: ViewStore, heads: dict[str, Callable[[], int | None]]) -> ReadModels:
    """Queries over ``store``, knowing the ``heads`` of some logs (for freshness), kept current by the
    store's change feed (a cache of consultations, waits woken by changes)."""
    changes = ViewChanges()
    reads = ReadModels(store, heads=heads, changes=changes)
    reads.stop_watching = store.watch(changes)
    return reads


def view_store(settings: Settings) -> ViewStore:
    """Redis when ``CLINIC_REDIS_URL`` is set, else an in-process store behind the same interface."""
    if settings.redis_url:
        return RedisViewStore.from_url(settings.redis_url, prefix=settings.redis_prefix, **settings.redis_tls)
    return MemoryViewStore()


AUDITED_KINDS = audited_kinds(CONTEXTS)


def build_auditor(apps: dict[str, Any]) -> Auditor:
    """Each kind an auditor may ask for (of the contexts in ``apps``), read from its owner's store."""
    return Auditor({kind: (apps[name], cls) for kind, (name, cls) in AUDITED_KINDS.items() if name in apps},
                   integrity=stream_integrity)


def stream_integrity(app: Any, aggregate_id: UUID) -> str | None:
    """``verified``, or the first broken link of the stream's hash chain; ``None`` where none is kept."""
    chain = PostgresEventChain.of(app)
    if chain is None:
        return None
    broken = chain.verify(aggregate_id).broken
    return f"broken at version {broken[0].version}: {broken[0].why}" if broken else "verified"


def open_stores(settings: Settings) -> Clinic:
    """Every context's store, hosted with no runner and no read models: for an operator's tools (``clinic
    audit``), which change nothing but the access logs their reads of personal data go to. Close it after."""
    apps = build_applications(settings, create_table=False)
    require_tables(apps)
    return Clinic.hosting(apps, auditor=build_auditor(apps))


def require_tables(apps: dict[str, Any]) -> None:
    """Each store answers and has its tables; else an error that names the cause and the fix."""
    for app in apps.values():
        try:
            app.recorder.max_notification_id()
        except Exception as error:  # noqa: BLE001 - reported with the cause and the fix
            raise store_error(f"the {app.name} event store", error, app.env) from error
        require_key_store(app)


def store_error(what: str, error: BaseException, env: Any = None) -> Exception:
    """``StoreUnavailableError`` for an outage, ``StoreNotReadyError`` for anything else (a pool's timeout
    whose diagnosis is refused credentials included), naming the cause."""
    cause = explain(error, env)
    if is_outage(error) and not permanent(cause):
        return StoreUnavailableError(f"{what} cannot be reached: {cause}")
    return StoreNotReadyError(f"{what} is not ready: {cause}")


def require_key_store(app: Any) -> None:
    """The subject key store the app's mapper uses answers (its tables exist)."""
    keys = getattr(app.mapper, "keys", None)
    if keys is None:
        return
    try:
        keys.store.record("")
    except Exception as error:  # noqa: BLE001 - reported with the cause and the fix
        raise store_error("the subject key store", error, app.env) from error
