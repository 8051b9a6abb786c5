"""The Litestar application: built from a running clinic and a token verifier."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig
from litestar.types import ControllerRouterHandler
from opentelemetry.trace import TracerProvider

from application.clinic import Clinic
from infrastructure.observability.metrics import Metrics
from infrastructure.security.tokens import TokenVerifier
from interfaces.http.authorization import require_scope
from interfaces.http.console.render import TEMPLATES
from interfaces.http.console.router import console_router
from interfaces.http.console.session import Console
from interfaces.http.contexts import CONTROLLERS
from interfaces.http.deprecation import deprecation_headers, refuse_after_sunset
from interfaces.http.metrics import serve_metrics
from interfaces.http.middleware import ApiMiddleware, RoutedRequestMiddleware
from interfaces.http.openapi import openapi_config
from interfaces.http.problems import problem_response
from interfaces.http.streams import STREAM_SECONDS
from interfaces.http.strict import canonical_ids, strict_input
from interfaces.http.tracing import route_span_names, tracing_plugins
from process_managers.base import utc_now

MAX_REQUEST_BYTES = 65536
"""The default limit on a request body (``CLINIC_MAX_REQUEST_BYTES``): larger ones are a 413."""


def create_app(clinic: Clinic, verifier: TokenVerifier, *, close_clinic_on_shutdown: bool = False,
               controllers: Sequence[ControllerRouterHandler] | None = None, max_request_bytes: int = MAX_REQUEST_BYTES,
               metrics: Metrics | None = None, tracer_provider: TracerProvider | None = None,
               clock: Callable[[], datetime] = utc_now, console: Console | None = None,
               stream_seconds: float = STREAM_SECONDS) -> Litestar:
    """The HTTP API over ``clinic`` (all of it, or ``controllers``); tokens are checked with ``verifier``.

    Every request passes ``ApiMiddleware`` (correlation id, response headers, metrics); once routed,
    ``RoutedRequestMiddleware`` checks the bearer token and the operation's scope
    (``authorization.REQUIRED_SCOPE``) before its handler applies the role and ownership rules
    (``access``). With ``metrics``, every request is counted and timed and ``/metrics`` is served
    (``interfaces/http/metrics.py``). With ``tracer_provider``, every request but probes and scrapes is a
    server span (``interfaces/http/tracing.py``); without one, no span is named and no ``traceparent`` read.
    Deprecated operations (``deprecation.DEPRECATIONS``) carry their headers, are counted per client in
    ``metrics``, and answer 410 once ``clock`` passes their sunset. Nothing of this takes a worker thread:
    only a handler declared ``sync_to_thread`` and the verification of a token not seen recently do.
    With ``console`` (how operators sign in), the operations console is served at ``/console``.
    A server-sent events stream lasts ``stream_seconds`` before it ends and the client reconnects.
    """
    app = Litestar(
        route_handlers=[*(controllers or CONTROLLERS), *([console_router(console)] if console is not None else [])],
        dependencies={"clinic": Provide(lambda: clinic, use_cache=True, sync_to_thread=False)},
        middleware=[
            *([route_span_names] if tracer_provider is not None else []),  # no server span to name otherwise
            canonical_ids,  # before the token: a path that names no resource is a 404 to anyone
            DefineMiddleware(RoutedRequestMiddleware, checks=[require_scope, refuse_after_sunset],
                             traced=tracer_provider is not None),
        ],
        before_request=strict_input,
        request_max_body_size=max_request_bytes,
        exception_handlers={Exception: problem_response},
        logging_config=None,  # logs go through the root logger's JSON handler (configure_logging)
        openapi_config=openapi_config(),
        state=State({"verifier": verifier, "clock": clock, "console": console, "stream_seconds": stream_seconds}),
        template_config=TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine) if console is not None else None,
        on_shutdown=[clinic.close] if close_clinic_on_shutdown else [],
        plugins=tracing_plugins(tracer_provider),
    )
    if metrics is not None:
        serve_metrics(app, metrics, refresh=partial(_refresh_gauges, clinic, metrics))
    app.asgi_handler = ApiMiddleware(app.asgi_handler, metrics, [deprecation_headers(metrics)])
    return app


async def _refresh_gauges(clinic: Clinic, metrics: Metrics) -> None:
    """What ``metrics`` tells of the present, read when scraped: each readiness check's result (cached 1 s and
    bounded, as the probe is) and, where this process keeps read models, their positions, lags and quarantined
    events (bounded too)."""
    metrics.readiness(await clinic.readiness.check())
    if clinic.read_model_desk is not None:
        await clinic.read_model_desk.observed(metrics)
