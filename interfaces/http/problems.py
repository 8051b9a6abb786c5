"""One table maps every error to an RFC 9457 ``application/problem+json`` response."""

from __future__ import annotations

import logging
from typing import Any

from eventsourcing.persistence import IntegrityError
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.exceptions import ValidationException as LitestarValidationException
from litestar.params import ParameterKwarg

from application.audit import AuditQueryError
from application.common import VersionConflictError
from application.read_models import CursorError, UnknownPositionError
from application.scheduling import SlotAlreadyOpenError
from domain.base import NotFoundError
from domain.consultation import ConsultationStateError
from domain.receipts import IdempotencyKeyReusedError
from domain.slot import SlotInUseError
from domain.webhooks import TooManySubscriptionsError, WebhookError
from infrastructure.outages import cause, is_outage
from infrastructure.security.tokens import InvalidTokenError
from interfaces.http.authorization import InsufficientScopeError
from interfaces.http.deprecation import GoneError
from interfaces.http.middleware import correlation_id_of
from interfaces.http.schemas import Problem
from process_managers.booking import SagaStateError

PROBLEM_JSON = "application/problem+json"
ACCEPTED_BODY = "application/json"
"""The only media type a request body may have."""
PROBLEM_BASE = "urn:clinic:problem:"
log = logging.getLogger(__name__)


class InvalidBodyError(Exception):
    """The request body is not valid JSON or does not match the schema."""

    def __init__(self, detail: str, status: int, field: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.field = field


class UnsupportedMediaTypeError(Exception):
    """The request body is not declared ``application/json`` (a missing or other ``Content-Type``)."""


# error class -> (status, stable type slug, title)
PROBLEMS: dict[type[Exception], tuple[int, str, str]] = {
    NotFoundError: (404, "not-found", "Resource not found"),
    SlotAlreadyOpenError: (409, "slot-already-open", "Slot already open"),
    SlotInUseError: (409, "slot-in-use", "Slot is held or booked"),
    ConsultationStateError: (409, "invalid-state", "Not allowed in the current state"),
    SagaStateError: (409, "invalid-state", "Not allowed in the current state"),
    VersionConflictError: (409, "version-conflict", "Version conflict"),
    IdempotencyKeyReusedError: (422, "idempotency-key-reused", "Idempotency key already used"),
    WebhookError: (422, "invalid-webhook", "Invalid webhook subscription"),
    TooManySubscriptionsError: (409, "too-many-webhooks", "Too many webhook subscriptions"),
    IntegrityError: (409, "version-conflict", "Version conflict"),
    AuditQueryError: (400, "invalid-query", "Invalid audit query"),
    CursorError: (400, "invalid-parameter", "Invalid request parameter"),
    UnknownPositionError: (400, "invalid-parameter", "Invalid request parameter"),
    InvalidTokenError: (401, "unauthenticated", "Authentication required"),
    NotAuthorizedException: (401, "unauthenticated", "Authentication required"),
    InsufficientScopeError: (403, "insufficient-scope", "Token scope insufficient"),
    PermissionDeniedException: (403, "forbidden", "Not allowed"),
    GoneError: (410, "gone", "Operation withdrawn"),
    UnsupportedMediaTypeError: (415, "unsupported-media-type", "Unsupported media type"),
}


CONCURRENT_WRITE_DETAIL = "Another request changed this resource at the same moment; read it again and retry."
RETRY_AFTER_SECONDS = 5
"""What a 503 tells the client to wait before retrying (``Retry-After``)."""
UNAVAILABLE = (503, "unavailable", "Service unavailable")
TOO_MANY = (429, "too-many-requests", "Too many requests")
TOO_MANY_DETAIL = "Over the rate this address or token may send; retry after the Retry-After seconds."
"""Answered by the gateway (and the Ingress), never by a service."""
UNAVAILABLE_DETAIL = "A service this request needs is not answering now; retry after the Retry-After seconds."


def problem_response(request: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    status, slug, title = _classify(error)
    errors = None
    if isinstance(error, InvalidBodyError):
        errors = [{"field": error.field or "$", "message": str(error)}]
    elif isinstance(error, LitestarValidationException) and isinstance(error.extra, list):
        errors = [{"field": _as_sent(request, str(e.get("key", "$"))), "message": str(e.get("message", ""))}
                  for e in error.extra]
    if status == 503:
        log.warning("answered 503: %s", cause(error))
    elif status >= 500:
        log.exception("unhandled error", exc_info=error)
    problem = Problem(
        type=PROBLEM_BASE + slug, title=title, status=status, detail=_detail(error, status),
        instance=request.url.path, correlation_id=correlation_id_of(request.scope),
        errors=errors,
    )
    return Response(problem, status_code=status, media_type=PROBLEM_JSON, headers=_challenge(error, status))


def _as_sent(request: Request[Any, Any, Any], key: str) -> str:
    """A parameter's name as the client sent it (``X-Min-Position``, ``from``), not the handler's (``min_position``)."""
    handler = request.scope.get("route_handler")
    field = handler.parsed_fn_signature.parameters.get(key) if handler is not None else None
    kwarg = getattr(field, "kwarg_definition", None)
    return (kwarg.header or kwarg.query or kwarg.name or key) if isinstance(kwarg, ParameterKwarg) else key


def _challenge(error: Exception, status: int) -> dict[str, str] | None:
    """RFC 6750 §3: how to authenticate (401), or which scope was missing (403 insufficient_scope);
    RFC 9110: when to retry (503, §10.2.3), the methods allowed (405, §15.5.6), the media type accepted
    (415, §15.5.16)."""
    if status == 405 and isinstance(error, HTTPException) and error.headers and "allow" in error.headers:
        return {"Allow": error.headers["allow"]}  # Litestar's router names the path's methods
    if status == 415:
        return {"Accept": ACCEPTED_BODY}
    if status == 503:
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if status == 401:
        return {"WWW-Authenticate": 'Bearer realm="clinic"'}
    if isinstance(error, InsufficientScopeError):
        return {"WWW-Authenticate": f'Bearer realm="clinic", error="insufficient_scope", '
                                    f'scope="{" ".join(error.scopes)}"'}
    return None


def _classify(error: Exception) -> tuple[int, str, str]:
    if is_outage(error):
        return UNAVAILABLE
    for cls in type(error).__mro__:
        if cls in PROBLEMS:
            return PROBLEMS[cls]
    if isinstance(error, InvalidBodyError):
        slug = "malformed-body" if error.status == 400 else "invalid-input"
        return error.status, slug, "Invalid request body" if error.status == 422 else "Malformed request body"
    if isinstance(error, LitestarValidationException):
        return 400, "invalid-parameter", "Invalid request parameter"
    if isinstance(error, HTTPException):
        return error.status_code, f"http-{error.status_code}", error.detail or "HTTP error"
    return 500, "internal-error", "Internal server error"


def _detail(error: Exception, status: int) -> str:
    if status == 503:
        return UNAVAILABLE_DETAIL
    if isinstance(error, IntegrityError):  # its text is the driver's (SQL, constraint names): never shown
        return CONCURRENT_WRITE_DETAIL
    if status >= 500:
        return "An unexpected error occurred; quote the correlation id when reporting it."
    if isinstance(error, HTTPException):
        return error.detail
    return str(error) or type(error).__name__
