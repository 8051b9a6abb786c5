"""HTTP metrics for a Litestar app: one ASGI middleware around everything, and ``GET /metrics``.

The middleware wraps the app's whole ASGI handler (outside routing and the exception
handlers), so 404s and 405s are counted too, as ``route="unmatched"``; a matched request is
counted by its route template (``scope["path_template"]``, e.g.
``/v1/consultations/{consultation_id}``), never by its raw path. ``/metrics`` needs no token
and is not in the OpenAPI document. The public API counts its requests the same way in its one
per-request middleware (``middleware.ApiMiddleware``), with the same ``RequestMetrics``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Litestar, Response, get
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from infrastructure.observability.metrics import UNMATCHED_ROUTE, Metrics

METRICS_PATH = "/metrics"
PUBLIC_OPT = "public"
"""A route handler with ``opt={"public": True}`` needs no scope (``authorization.require_scope``)."""


class RequestMetrics:
    """``Metrics.http_request`` with each series' children looked up once: prometheus_client's ``labels``
    takes a lock and checks every label value on each call, three times the cost of the counting itself."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def __call__(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered request (``route``: the template, or ``unmatched``), as ``Metrics.http_request``."""
        series = self.series.get((method, route, status))
        if series is None:
            series = self.series[(method, route, status)] = self._children(method, route, status)
        count, duration = series
        count.inc()
        duration.observe(seconds)

    def _children(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        service = self.metrics.service
        return (self.metrics.http_requests.labels(service, method, route, str(status)),
                self.metrics.http_duration.labels(service, method, route))


class HttpMetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.observe = RequestMetrics(metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.observe(scope["method"], scope.get("path_template") or UNMATCHED_ROUTE, status,
                         time.perf_counter() - started)


def metrics_endpoint(metrics: Metrics, refresh: Callable[[], Awaitable[None]] | None = None) -> Any:
    """``GET /metrics``: the Prometheus text format of ``metrics``, after ``refresh`` (what is observed when
    scraped: the readiness checks)."""

    @get(METRICS_PATH, include_in_schema=False, opt={PUBLIC_OPT: True})
    async def serve_metrics() -> Response[bytes]:
        if refresh is not None:
            await refresh()
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type.removesuffix("; charset=utf-8"))  # Litestar adds the charset

    return serve_metrics


def instrument(app: Litestar, metrics: Metrics | None, *, serve: bool = True) -> Litestar:
    """Measure every request ``app`` answers and (``serve``) serve ``/metrics`` on it; nothing if
    ``metrics`` is None."""
    if metrics is not None:
        if serve:
            serve_metrics(app, metrics)
        app.asgi_handler = HttpMetricsMiddleware(app.asgi_handler, metrics)
    return app


def serve_metrics(app: Litestar, metrics: Metrics, refresh: Callable[[], Awaitable[None]] | None = None) -> None:
    """``/metrics`` on ``app`` (whatever measures its requests: ``instrument``, or ``middleware.ApiMiddleware``)."""
    app.register(metrics_endpoint(metrics, refresh))
