"""Per-request plumbing: correlation id, bearer authentication, event metadata."""

from __future__ import annotations

import re
import uuid
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from domain.metadata import event_metadata
from interfaces.security.tokens import InvalidTokenError, Principal, TokenVerifier

CORRELATION_HEADER = "x-correlation-id"
_VALID_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
PUBLIC_PATHS = ["^/health/", "^/schema"]


def correlation_middleware(app: ASGIApp) -> ASGIApp:
    """Accept ``X-Correlation-Id`` (or make one), keep it in scope state, echo it back."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        correlation_id = _incoming_correlation_id(scope) or str(uuid.uuid4())
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        raw_id = correlation_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-correlation-id"]
                message["headers"] = [*headers, (b"x-correlation-id", raw_id)]
            await send(message)

        await app(scope, receive, send_with_id)

    return middleware


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
        try:
            principal = verifier.verify(token.strip())
        except InvalidTokenError as error:
            raise NotAuthorizedException(f"invalid bearer token: {error}") from None
        return AuthenticationResult(user=principal, auth=token)


def event_metadata_middleware(app: ASGIApp) -> ASGIApp:
    """Stamp every event this request causes with its correlation id, request id and caller."""

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
        ):
            await app(scope, receive, send)

    return middleware
