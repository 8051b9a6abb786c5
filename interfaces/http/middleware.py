"""Per-request plumbing: correlation id, bearer authentication, event metadata."""

from __future__ import annotations

import re
import uuid
from typing import Any

import anyio.to_thread
from litestar.connection import ASGIConnection
from litestar.datastructures import MutableScopeHeaders
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from domain.metadata import event_metadata
from infrastructure.observability.logging import log_context
from infrastructure.observability.tracing import current_traceparent
from infrastructure.security.tokens import InvalidTokenError, Principal, TokenVerifier

CORRELATION_HEADER = "x-correlation-id"
_VALID_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
PUBLIC_PATHS = ["^/health/", "^/schema", "^/metrics$"]


def correlation_id_of(scope: Scope) -> str:
    """The request's correlation id: kept in scope state, else accepted from the header, else new."""
    state = scope.setdefault("state", {})
    if "correlation_id" not in state:
        state["correlation_id"] = _incoming_correlation_id(scope) or str(uuid.uuid4())
    return state["correlation_id"]


def correlation_middleware(app: ASGIApp) -> ASGIApp:
    """Resolve the correlation id before anything else, so events and logs can use it."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        with log_context(correlation_id=correlation_id_of(scope)):  # every log line of the request, 401s too
            await app(scope, receive, send)

    return middleware


async def echo_correlation_id(message: Message, scope: Scope) -> None:
    """``before_send`` hook: every response, errors from routing and auth included, echoes the id."""
    if message["type"] == "http.response.start":
        headers = MutableScopeHeaders.from_message(message)
        headers["X-Correlation-Id"] = correlation_id_of(scope)


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Cache-Control": "no-store",
}
"""On every response: health data is never cached, framed, sniffed or leaked through a referrer.
HSTS matters only where TLS ends (the ingress), and is harmless elsewhere."""
_DOCUMENTATION = "/schema"


async def security_headers(message: Message, scope: Scope) -> None:
    """``before_send`` hook: the security headers, where the handler did not set them itself.

    The OpenAPI pages under ``/schema`` load scripts and styles, so they get no
    ``Content-Security-Policy`` (they hold no patient data).
    """
    if message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    for name, value in SECURITY_HEADERS.items():
        if name == "Content-Security-Policy" and scope.get("path", "").startswith(_DOCUMENTATION):
            continue
        if name not in headers:
            headers[name] = value


def _incoming_correlation_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name.decode("latin-1").lower() == CORRELATION_HEADER:
            candidate = value.decode("latin-1").strip()
            return candidate if _VALID_CORRELATION_ID.match(candidate) else None
    return None


class BearerAuthenticationMiddleware(AbstractAuthenticationMiddleware):
    """Every route but health and the OpenAPI document needs a valid bearer JWT."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthorizedException("a bearer token is required (Authorization: Bearer <JWT>)")
        verifier: TokenVerifier = connection.app.state.verifier
        remembered = getattr(verifier, "cached", None)  # a caching verifier answers a recent token at once
        principal = remembered(token.strip()) if remembered is not None else None
        if principal is not None:
            return AuthenticationResult(user=principal, auth=token)
        try:  # in a worker thread: the verifier may fetch the issuer's JWKS (never block the event loop)
            principal = await anyio.to_thread.run_sync(verifier.verify, token.strip())
        except InvalidTokenError as error:
            raise NotAuthorizedException(f"invalid bearer token: {error}") from None
        return AuthenticationResult(user=principal, auth=token)


def event_metadata_middleware(app: ASGIApp) -> ASGIApp:
    """Stamp every event this request causes with its correlation id, request id, caller and trace
    (the server span: whoever publishes or processes the events later continues it)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        user = scope.get("user")
        state = scope.get("state", {})
        with event_metadata(
            correlation_id=state.get("correlation_id"),
            causation_id=f"request:{uuid.uuid4()}",
            saga_id=None,
            actor=user.sub if isinstance(user, Principal) else None,
            traceparent=current_traceparent(),
        ):
            await app(scope, receive, send)

    return middleware
