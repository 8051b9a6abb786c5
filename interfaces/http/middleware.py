"""Per-request plumbing: correlation id, response headers, metrics, bearer authentication, event metadata.

The public API (``app.create_app``) pays for it in two pure ASGI middlewares, one pass each:

- ``ApiMiddleware`` wraps the whole app, routing and its 404s included: it resolves the correlation
  id, binds it to every log line of the request, adds the response headers (the echoed id, the
  security headers, what its header hooks add) and counts and times the request;
- ``RoutedRequestMiddleware`` runs once the request is routed: the bearer token, the app-wide checks
  (the operation's scope, its sunset), then the event metadata around the handler.

Nothing runs on a worker thread unless a token must be verified (its signature, maybe the JWKS).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import anyio.to_thread
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send

from domain.metadata import event_metadata
from infrastructure.observability.logging import log_context
from infrastructure.observability.metrics import UNMATCHED_ROUTE, Metrics
from infrastructure.observability.tracing import current_traceparent
from infrastructure.security.tokens import InvalidTokenError, Principal, TokenVerifier
from interfaces.http.metrics import RequestMetrics

CORRELATION_HEADER = "x-correlation-id"
_CORRELATION = CORRELATION_HEADER.encode()
_VALID_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
PUBLIC_PATHS = ["^/health/", "^/schema", "^/metrics$"]
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
"""A random hex digit -> the RFC 9562 variant digit with the same two low bits."""
_BATCH = 128
"""Ids made from one ``os.urandom`` call: one system call per 128 ids instead of one per id."""


def _as_uuid(digits: str) -> str:
    """32 random hex digits as the text of a version 4 UUID."""
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{_VARIANT[digits[16]]}{digits[17:20]}-{digits[20:]}"


def _batch() -> Iterator[str]:
    digits = os.urandom(16 * _BATCH).hex()
    return iter([_as_uuid(digits[start:start + 32]) for start in range(0, 32 * _BATCH, 32)])


_ids: Iterator[str] = iter(())


def _fresh_ids() -> None:
    """In a forked child: never hand out the ids the parent may hand out too."""
    global _ids
    _ids = iter(())


os.register_at_fork(after_in_child=_fresh_ids)


def new_id() -> str:
    """A random (version 4) UUID as text, as ``str(uuid.uuid4())`` writes it, for a quarter of its CPU.

    Each id is taken once by ``next`` on a list iterator, which the GIL makes atomic: threads never
    share one, and two that find the batch spent each make a fresh one."""
    global _ids
    found = next(_ids, None)
    if found is None:
        _ids = _batch()
        found = next(_ids)
    return found


def correlation_id_of(scope: Scope) -> str:
    """The request's correlation id: kept in scope state, else accepted from the header, else new."""
    state = scope.setdefault("state", {})
    correlation_id = state.get("correlation_id")
    if correlation_id is None:
        correlation_id = state["correlation_id"] = _incoming_correlation_id(scope) or new_id()
    return correlation_id


def _incoming_correlation_id(scope: Scope) -> str | None:
    candidate = _header(scope, _CORRELATION).strip()
    return candidate if candidate and _VALID_CORRELATION_ID.match(candidate) else None


def _header(scope: Scope, name: bytes) -> str:
    """The first value of request header ``name`` (lowercase), or ``""``."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def correlation_middleware(app: ASGIApp) -> ASGIApp:
    """Resolve the correlation id before anything else, so events and logs can use it (apps without
    ``ApiMiddleware``)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
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
HSTS matters only where TLS ends (the ingress), and is harmless elsewhere. The OpenAPI pages under
``/schema`` load scripts and styles, so they get no ``Content-Security-Policy`` (they hold no patient data)."""
_SECURITY = [(name.lower().encode(), value.encode("latin-1")) for name, value in SECURITY_HEADERS.items()]
_CSP = b"content-security-policy"
_SECURITY_BUT_CSP = [(name, value) for name, value in _SECURITY if name != _CSP]
_SECURITY_NAMES = frozenset(name for name, _ in _SECURITY)
_DOCUMENTATION = "/schema"

HeaderHook = Callable[[Scope], Mapping[str, str] | None]
"""The headers a response to this request carries besides the usual ones (they replace any the handler
set), called once per response when it starts."""


class ApiMiddleware:
    """Around the whole app (routing, 404s and error responses included), one pass per request: the
    correlation id is resolved and bound to every log line, every response echoes it and carries the
    security headers (where the handler did not set them) and its ``hooks``' headers, and with ``metrics``
    every request is counted and timed by method, route template (``unmatched``: no route) and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None, hooks: Sequence[HeaderHook] = ()) -> None:
        self.app = app
        self.observe = RequestMetrics(metrics) if metrics is not None else None
        self.hooks = tuple(hooks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        correlation_id = correlation_id_of(scope)
        started = time.perf_counter()
        status = 500  # if the app fails before answering

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self.add_headers(scope, message, correlation_id)
            await send(message)

        try:
            with log_context(correlation_id=correlation_id):
                await self.app(scope, receive, send_with_headers)
        finally:
            if self.observe is not None:
                route = scope.get("path_template") or UNMATCHED_ROUTE
                self.observe(scope["method"], route, status, time.perf_counter() - started)

    def add_headers(self, scope: Scope, message: HTTPResponseStartEvent, correlation_id: str) -> None:
        """The echoed correlation id, the security headers the response lacks, then the hooks' headers."""
        headers = _header_list(message)
        present = {name.lower() for name, _ in headers}
        _replace(headers, present, _CORRELATION, correlation_id)
        headers.extend(_missing_security_headers(present, scope["path"].startswith(_DOCUMENTATION)))
        for hook in self.hooks:
            extra = hook(scope)
            for text, value in (extra or {}).items():
                _replace(headers, present, text.lower().encode("latin-1"), value)


def _missing_security_headers(present: set[bytes], documentation: bool) -> list[tuple[bytes, bytes]]:
    """The security headers a response with headers ``present`` lacks (no CSP on the ``documentation``)."""
    wanted = _SECURITY_BUT_CSP if documentation else _SECURITY
    if present.isdisjoint(_SECURITY_NAMES):
        return wanted
    return [(name, value) for name, value in wanted if name not in present]


def _header_list(message: HTTPResponseStartEvent) -> list[tuple[bytes, bytes]]:
    headers = message.get("headers")  # ASGI lets it be missing, or any iterable
    if not isinstance(headers, list):
        headers = message["headers"] = list(headers or ())
    return headers


def _replace(headers: list[tuple[bytes, bytes]], present: set[bytes], name: bytes, value: str) -> None:
    """Set header ``name`` (lowercase) to ``value``, dropping any value it had."""
    if name in present:
        headers[:] = [(key, old) for key, old in headers if key.lower() != name]
    headers.append((name, value.encode("latin-1")))
    present.add(name)


RouteCheck = Callable[[Scope], None]
"""A check of a routed, authenticated request: it raises to refuse it (``authorization.require_scope``)."""
EXCLUDE_FROM_AUTH = "exclude_from_auth"
"""A route handler with ``opt={"exclude_from_auth": True}`` needs no token."""
_AUTHORIZATION = b"authorization"


class RoutedRequestMiddleware:
    """Once routed, one pass before the handler: the caller, the app-wide checks, the event metadata.

    - The bearer JWT is verified and its ``Principal`` put in ``scope["user"]`` on every route but the
      ``public`` paths (health, the OpenAPI document, ``/metrics``), routes that opt out
      (``EXCLUDE_FROM_AUTH``) and ``OPTIONS``: Litestar's authentication middleware's rules.
    - The ``checks`` pass, in order (the operation's scope, then its sunset).
    - Every event the request causes is stamped with its correlation id, a request id, the caller and,
      when the app is ``traced``, the server span (whoever publishes or processes the events later
      continues it; an app that makes no server span has none to stamp).

    Nothing waits on a thread but a token the verifier has not seen (its signature, maybe the JWKS).
    """

    def __init__(self, app: ASGIApp, checks: Sequence[RouteCheck] = (), public: Sequence[str] = PUBLIC_PATHS,
                 traced: bool = True) -> None:
        self.app = app
        self.checks = tuple(checks)
        self.public = re.compile("|".join(public))
        self.traced = traced

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.needs_token(scope):
            scope["user"], scope["auth"] = await authenticate(scope)
        for check in self.checks:
            check(scope)
        user = scope.get("user")
        with event_metadata(correlation_id=correlation_id_of(scope), causation_id=f"request:{new_id()}",
                            saga_id=None, actor=user.sub if isinstance(user, Principal) else None,
                            traceparent=current_traceparent() if self.traced else None):
            await self.app(scope, receive, send)

    def needs_token(self, scope: Scope) -> bool:
        """Whether this routed request must carry a valid bearer token."""
        return not (scope["route_handler"].opt.get(EXCLUDE_FROM_AUTH) or (scope["type"] == ScopeType.HTTP and scope["method"] == "OPTIONS")
                    or self.public.search(scope["path"]))


async def authenticate(scope: Scope) -> tuple[Principal, str]:
    """The caller named by the request's bearer JWT, and the token; 401 (``NotAuthorizedException``) without
    a valid one. A caching verifier answers a token it verified recently at once; any other verification
    runs in a worker thread (it may fetch the issuer's JWKS: never block the event loop)."""
    scheme, _, token = _header(scope, _AUTHORIZATION).partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise NotAuthorizedException("a bearer token is required (Authorization: Bearer <JWT>)")
    verifier: TokenVerifier = scope["app"].state.verifier
    remembered = getattr(verifier, "cached", None)
    principal = remembered(token) if remembered is not None else None
    if principal is not None:
        return principal, token
    try:
        return await anyio.to_thread.run_sync(verifier.verify, token), token
    except InvalidTokenError as error:
        raise NotAuthorizedException(f"invalid bearer token: {error}") from None
