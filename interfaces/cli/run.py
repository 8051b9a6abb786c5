"""``clinic run <service>``: one context as a service of distributed mode.

``--role api`` serves the context's part of ``/v1`` (scale these replicas freely);
``--role worker`` runs its outbox relay, its consumer and its timer (booking: the sagas' deadlines;
notifications: the webhooks due) (one per context), and serves only the health probes; ``--role all`` does both in one
process. On SIGTERM the service
stops being ready, goes on serving HTTP for ``CLINIC_DRAIN_SECONDS`` (so load balancers stop
sending), stops taking messages, lets in-flight work finish and be acked, then exits. The drain is
interfaces/cli/graceful.py's, shared with ``clinic run auth`` and ``clinic serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable

import uvicorn
from opentelemetry.sdk.trace import TracerProvider

from application.clinic import Clinic
from application.read_model_desk import ReadModelDesk
from application.registry import RegistryApplication
from application.services import (
    Worker,
    build_projections,
    build_service,
    dead_letter_desk,
    follow_projections,
    redis_answers,
    with_backoff,
)
from application.settings import Settings
from infrastructure.observability.logging import configure_logging
from infrastructure.observability.metrics import Metrics
from infrastructure.observability.tracing import configure_tracing, shutdown_tracing
from infrastructure.read_models.redis_store import RedisViewStore
from infrastructure.tls import Pki
from interfaces.cli.graceful import GRACE_SECONDS, drain, run, stop_on_signals
from interfaces.cli.graceful import Server as _Server
from interfaces.cli.graceful import until_stopped_or_failed as _until_stopped_or_failed
from interfaces.cli.main import settings
from interfaces.http.app import create_app
from interfaces.http.console.session import Console
from interfaces.http.contexts import SERVICE_CONTROLLERS
from interfaces.http.controllers.health import HealthController
from interfaces.http.internal import create_internal_registry_app, internal_server_config
from interfaces.security.trust import console_oauth, token_verifier, uses_dev_key

log = logging.getLogger("clinic.service")
REGISTRY_INTERNAL_PORT = 8443
"""The registry's mTLS endpoint (``--internal-port``): the port ``CLINIC_REGISTRY_URL`` names in a cluster."""


def run_service(args: argparse.Namespace) -> int:
    if args.service is None:
        raise ValueError("name the service: clinic run <registry|scheduling|consultations|booking> "
                         "(or set CLINIC_SERVICE)")
    config = settings()
    configure_logging(args.service, config.log_level, json=config.log_format == "json")
    tracing = configure_tracing(args.service, config)
    try:
        return run(_run(args, config, tracing))  # uvloop, as uvicorn.run and ``clinic serve`` run
    finally:
        shutdown_tracing(tracing)  # the last spans are flushed before exit


async def _run(args: argparse.Namespace, config: Settings, tracing: TracerProvider | None = None) -> int:
    stop = stop_on_signals()
    if args.service == "auth":
        from interfaces.auth.cli import serve_auth

        return await serve_auth(args, config, stop, tracing)
    args.port = args.port or 8000
    if args.service == "projections":
        return await _run_projections(args, config, stop)
    if args.service == "console":
        return await _run_console(args, config, stop, tracing)
    metrics = Metrics.for_service(args.service)
    clinic = await with_backoff("the event store",
                                lambda: asyncio.to_thread(build_service, args.service, config, args.role, metrics), stop)
    if clinic is None:
        return 0
    clinic.checks["accepting"] = lambda: not stop.is_set()
    workers = _start_worker(args, config, clinic, stop, metrics)
    servers = _servers(args, config, clinic, metrics, tracing)
    serving = [asyncio.create_task(server.serve(), name=f"http:{server.config.port}") for server in servers]
    log.info("%s service running (role %s)", args.service, args.role)
    failed = await _until_stopped_or_failed(stop, [*workers, *serving])
    stop.set()  # readiness is false from here on
    if not failed and args.role != "worker":
        await drain(serving, config.drain_seconds)
    await asyncio.gather(*workers, return_exceptions=True)  # consumers stop, in-flight work is acked
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*serving, return_exceptions=True)
    clinic.close()
    return 1 if failed else 0


async def _run_projections(args: argparse.Namespace, config: Settings, stop: asyncio.Event) -> int:
    """The projection worker: keeps every read model in Redis up with the event stores; health on --port."""
    metrics = Metrics.for_service("projections")
    built = await with_backoff("the event stores", lambda: asyncio.to_thread(build_projections, config),
                               stop)
    if built is None:
        return 0
    runner, apps = built
    following = asyncio.create_task(follow_projections(runner, apps, stop), name="projections")
    store = runner.store
    if not isinstance(store, RedisViewStore):
        raise TypeError(f"the projection worker keeps its views in Redis, not in {type(store).__name__}")
    clinic = Clinic.hosting(apps, checks={
        "redis": redis_answers(store),
        "projections": lambda: runner.last_error is None and not following.done(),
        "accepting": lambda: not stop.is_set()}, read_model_desk=ReadModelDesk(apps, store))
    server = _server(create_app(clinic, token_verifier(config), controllers=SERVICE_CONTROLLERS["projections"],
                                metrics=metrics),
                     uvicorn.Config, host=args.host, port=args.port, access_log=config.access_log)
    serving = asyncio.create_task(server.serve(), name=f"http:{args.port}")
    log.info("projections worker running")
    failed = await _until_stopped_or_failed(stop, [following, serving])
    stop.set()
    server.should_exit = True
    await asyncio.gather(following, serving, return_exceptions=True)
    clinic.close()
    return 1 if failed else 0


async def _run_console(args: argparse.Namespace, config: Settings, stop: asyncio.Event,
                       tracing: TracerProvider | None = None) -> int:
    """The operations console behind the gateway: operators sign in through the authorization server; it
    reads sagas and streams through the public API (the gateway, ``CLINIC_CONSOLE_URL``) with the operator's
    token, and reads and re-drives the followers' dead letters on a broker connection of its own."""
    if uses_dev_key(config) or not config.console_url:
        raise ValueError("clinic run console signs operators in through the authorization server: set "
                         "CLINIC_JWT_ISSUER to its URL and CLINIC_CONSOLE_URL to where browsers reach the console "
                         "(embedded mode serves the console itself: clinic serve)")
    desk = dead_letter_desk(config)
    console = Console(None, oauth=console_oauth(config), in_process=False,
                      api_url=config.console_api_url or config.console_url, dead_letters=desk,
                      secure_cookie=config.console_url.startswith("https://"),
                      trace_url_template=config.trace_url_template)
    clinic = Clinic.hosting({}, checks={"accepting": lambda: not stop.is_set()})
    app = create_app(clinic, token_verifier(config), controllers=[HealthController], console=console,
                     metrics=Metrics.for_service("console"), tracer_provider=tracing)
    server = _server(app, uvicorn.Config, host=args.host, port=args.port, access_log=config.access_log,
                     **config.proxy_options)
    serving = asyncio.create_task(server.serve(), name=f"http:{args.port}")
    log.info("console running; browsers reach it at %s/console", config.console_url)
    failed = await _until_stopped_or_failed(stop, [serving])
    stop.set()
    if not failed:
        await drain([serving], config.drain_seconds)
    server.should_exit = True
    await asyncio.gather(serving, return_exceptions=True)
    await desk.close()
    return 1 if failed else 0


def _start_worker(args: argparse.Namespace, config: Settings, clinic: Clinic,
                  stop: asyncio.Event, metrics: Metrics | None = None) -> list[asyncio.Task[object]]:
    if args.role not in ("worker", "all"):
        return []
    worker = Worker(clinic.apps()[0], config, metrics=metrics)
    clinic.checks["rabbitmq"] = lambda: worker.ready
    return [asyncio.create_task(worker.run(stop), name="worker")]


def _servers(args: argparse.Namespace, config: Settings, clinic: Clinic,
             metrics: Metrics | None = None, tracing: TracerProvider | None = None) -> list[_Server]:
    """The public API (api, all), or only the health probes (worker), and ``/metrics``; plus registry's
    mTLS endpoint."""
    verifier = token_verifier(config)
    controllers = SERVICE_CONTROLLERS[args.service] if args.role != "worker" else [HealthController]
    servers = [_server(create_app(clinic, verifier, controllers=controllers, max_request_bytes=config.max_request_bytes,
                                  metrics=metrics, tracer_provider=tracing), uvicorn.Config, host=args.host,
                       port=args.port, access_log=config.access_log, **config.proxy_options)]
    if args.service == "registry" and args.role != "worker":
        internal = create_internal_registry_app(clinic.require(RegistryApplication), verifier, metrics, tracing)
        # always logged: service-to-service calls do not pass the gateway, whose line covers the public API
        servers.append(_server(internal, internal_server_config, Pki.open(config.pki, services=("registry",)), host=args.host,
                               port=args.internal_port or REGISTRY_INTERNAL_PORT, proxy_headers=False))  # callers come straight, never via a proxy
    if any(server.config.access_log for server in servers):
        # uvicorn's Config(access_log=False) silences the "uvicorn.access" logger for the whole process: turn
        # it back on for the servers that log (the others' own flag keeps them quiet)
        logging.getLogger("uvicorn.access").propagate = True
    return servers


def _server(app: object, make_config: Callable[..., uvicorn.Config], *args: object, **options: object) -> _Server:
    # log_config=None: uvicorn's own records go to the root logger's JSON handler (configure_logging)
    return _Server(make_config(app, *args, log_level="info", log_config=None, timeout_graceful_shutdown=GRACE_SECONDS,
                               **options))

