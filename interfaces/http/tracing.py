"""HTTP server spans: Litestar's OpenTelemetry plugin, with spans named by route template.

The plugin (ASGI instrumentation) wraps the whole app, so it starts the server span before
routing, from any incoming ``traceparent``; ``route_span_names`` runs once routed and renames
it ``METHOD /route/{template}``. Health probes and ``/metrics`` are not traced.
"""

from __future__ import annotations

from typing import Any

from litestar.enums import ScopeType
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.types import ASGIApp, Receive, Scope, Send
from opentelemetry.trace import TracerProvider

from infrastructure.observability.tracing import UNTRACED_PATHS, name_server_span


def tracing_plugins(tracer_provider: TracerProvider | None) -> list[OpenTelemetryPlugin]:
    """The plugin for an app's server spans, or none when this process does not trace."""
    if tracer_provider is None:
        return []
    return [OpenTelemetryPlugin(OpenTelemetryConfig(
        tracer_provider=tracer_provider, exclude=UNTRACED_PATHS, exclude_spans=["receive", "send"],
        scope_span_details_extractor=_method_only))]


def route_span_names(app: ASGIApp) -> ASGIApp:
    """Middleware (after routing): the server span is named by the route template."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            name_server_span(scope)
        await app(scope, receive, send)

    return middleware


def _method_only(scope: Scope) -> tuple[str, dict[str, Any]]:
    """Before routing only the method is known: a raw path would make one span name per id."""
    return str(scope.get("method", "HTTP")), {}
