"""``clinic serve``: the HTTP API and the saga runner in one process (embedded mode).

On SIGTERM/SIGINT it drains like ``clinic run``'s APIs (interfaces/cli/graceful.py): ``/health/ready`` says 503
(``accepting: false``) while it goes on serving for ``CLINIC_DRAIN_SECONDS``, then it closes its port.
"""

from __future__ import annotations

import argparse

import uvicorn

from application.bootstrap import bootstrap
from application.clinic import Clinic
from infrastructure.observability.logging import configure_logging
from infrastructure.observability.metrics import Metrics
from infrastructure.observability.tracing import configure_tracing, shutdown_tracing
from interfaces.cli.graceful import GRACE_SECONDS, Server, run, serve_until_stopped, stop_on_signals
from interfaces.cli.main import settings
from interfaces.http.app import create_app
from interfaces.http.console.session import Console
from interfaces.security.trust import dev_issuer, token_verifier, uses_dev_key


def run_serve(args: argparse.Namespace) -> int:
    config = settings()
    configure_logging("clinic", config.log_level, json=config.log_format == "json")
    verifier = token_verifier(config)
    metrics = Metrics.for_service("clinic")
    tracing = configure_tracing("clinic", config)
    clinic = bootstrap(config, metrics=metrics)
    console = Console(dev_issuer(config), trace_url_template=config.trace_url_template) if uses_dev_key(config) else None
    app = create_app(clinic, verifier, close_clinic_on_shutdown=True, max_request_bytes=config.max_request_bytes,
                     metrics=metrics, tracer_provider=tracing, console=console)
    server = Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="info", log_config=None,
                                   access_log=config.access_log, timeout_graceful_shutdown=GRACE_SECONDS,
                                   **config.proxy_options))
    print(f"clinic: serving on http://{args.host}:{args.port} ({config.persistence} stores in {config.data_dir}); "
          f"get a token with `clinic token --sub ID --role ADMIN`"
          + (f"; the console: http://{args.host}:{args.port}/console" if console is not None else ""), flush=True)
    try:
        return run(_serve(server, clinic, config.drain_seconds))  # uvloop, as uvicorn.run would pick it
    finally:
        shutdown_tracing(tracing)


async def _serve(server: Server, clinic: Clinic, drain_seconds: float) -> int:
    stop = stop_on_signals()
    clinic.checks["accepting"] = lambda: not stop.is_set()
    return await serve_until_stopped(server, stop, drain_seconds)
