"""Deprecated operations: one table drives their headers, their sunset, their metric and their docs.

A row of ``DEPRECATIONS`` names an operation (its ``operationId``), when it was deprecated,
when it goes away (its sunset), the section of ``docs/deprecation.md`` that says how to
migrate, and the route that succeeds it. From the row alone:

- every response of the operation, errors included, carries ``Deprecation: @<unix seconds>``
  (RFC 9745), ``Sunset: <HTTP-date>`` (RFC 8594) and ``Link: <guide>; rel="deprecation",
  <successor>; rel="successor-version"`` (``deprecation_headers``, a response header hook);
- from the sunset on (by the app's clock) the operation answers ``410 Gone`` to every caller
  its scope lets through, with the same headers (``refuse_after_sunset``, checked after the
  operation's scope, so a caller without the scope still gets 401/403);
- each response is counted by operation and the token's ``client_id`` (``DeprecatedUseObserver``);
- the OpenAPI document marks the operation ``deprecated`` and documents the headers on every
  response (``document_deprecations``).

Deprecating another operation is one more row (and a section in docs/deprecation.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import cached_property
from typing import Any, Protocol

from litestar.exceptions import HTTPException
from litestar.types import Scope

from infrastructure.security.tokens import Principal

GUIDE = "/docs/deprecation.md"
"""Where the migration guides are published (the API's origin serves docs/ there)."""
ANONYMOUS = "anonymous"
"""The ``client_id`` label of a request without a verified token (e.g. a 401)."""
UNIDENTIFIED = "unidentified"
"""The ``client_id`` label of a verified token without a ``client_id`` (or ``azp``) claim."""


@dataclass(frozen=True)
class Deprecation:
    """One deprecated operation: when it was deprecated, when it goes, how to migrate, what replaces it."""

    deprecated_at: datetime
    sunset: datetime
    guide: str
    """The migration guide's section (a URI reference)."""
    successor: str
    """The successor route, a template filled from the request's path parameters."""

    def headers(self, path_params: dict[str, Any]) -> dict[str, str]:
        """The response headers: Deprecation (RFC 9745), Sunset (RFC 8594) and the two links."""
        successor = self.successor.format(**path_params)
        return {**self._dates, "Link": f'<{self.guide}>; rel="deprecation"; type="text/markdown", '
                                       f'<{successor}>; rel="successor-version"'}

    @cached_property
    def _dates(self) -> dict[str, str]:
        return {"Deprecation": f"@{int(self.deprecated_at.timestamp())}",
                "Sunset": format_datetime(self.sunset.astimezone(UTC), usegmt=True)}

    def is_gone(self, now: datetime) -> bool:
        return now >= self.sunset


DEPRECATIONS: dict[str, Deprecation] = {
    "getConsultation": Deprecation(
        deprecated_at=datetime(2026, 12, 1, tzinfo=UTC),
        sunset=datetime(2027, 7, 1, tzinfo=UTC),
        guide=f"{GUIDE}#getconsultation-v1-to-v2",
        successor="/v2/consultations/{consultation_id}",
    ),
}
"""operationId -> its deprecation. Policy (docs/deprecation.md): at least 6 months from deprecation to sunset."""


class DeprecatedUseObserver(Protocol):
    """Told of every response of a deprecated operation (``Metrics`` is one)."""

    def deprecated_request(self, operation: str, client_id: str) -> None: ...


class GoneError(HTTPException):
    """The operation was withdrawn at its sunset; its successor and migration guide are in ``Link``."""

    status_code = 410


def deprecation_of(scope: Scope) -> tuple[str, Deprecation] | None:
    """The deprecated operation the request was routed to, if it is one."""
    handler = scope.get("route_handler")
    operation = getattr(handler, "operation_id", None)
    if isinstance(operation, str) and operation in DEPRECATIONS:
        return operation, DEPRECATIONS[operation]
    return None


def client_of(scope: Scope) -> str:
    """The metric's ``client_id``: the verified token's client, ``unidentified`` or ``anonymous``."""
    user = scope.get("user")
    if not isinstance(user, Principal):
        return ANONYMOUS
    return user.client_id or UNIDENTIFIED


def deprecation_headers(observer: DeprecatedUseObserver | None) -> Callable[[Scope], dict[str, str] | None]:
    """A response header hook (``middleware.ApiMiddleware``): the headers of every response of a deprecated
    operation, which it counts in ``observer``; ``None`` for any other request."""

    def hook(scope: Scope) -> dict[str, str] | None:
        found = deprecation_of(scope)
        if found is None:
            return None
        operation, deprecation = found
        if observer is not None:
            observer.deprecated_request(operation, client_of(scope))
        return deprecation.headers(scope.get("path_params", {}))

    return hook


def refuse_after_sunset(scope: Scope) -> None:
    """App-wide check of a routed request (after the scope check): a deprecated operation past its sunset is
    410 Gone. Plain and synchronous: nothing in it waits, so it runs on the event loop."""
    found = deprecation_of(scope)
    if found is None:
        return
    operation, deprecation = found
    clock: Callable[[], datetime] = scope["app"].state.clock
    if deprecation.is_gone(clock()):
        raise GoneError(gone_detail(operation, deprecation, scope.get("path_params", {})))


def gone_detail(operation: str, deprecation: Deprecation, path_params: dict[str, Any]) -> str:
    """The 410's ``detail``: when the operation went, what replaces it, where the guide is."""
    return (f"{operation} was withdrawn at its sunset ({deprecation.sunset.isoformat()}); use "
            f"{deprecation.successor.format(**path_params)} (migration guide: {deprecation.guide})")


# OpenAPI -------------------------------------------------------------------------------------------

_HEADER_DOCS = {
    "Deprecation": ("When this operation was deprecated (RFC 9745): `@` and Unix seconds", "^@[0-9]+$"),
    "Sunset": ("When this operation stops working (RFC 8594, an HTTP-date); from then on it answers 410", None),
    "Link": ('The migration guide (`rel="deprecation"`) and the successor route (`rel="successor-version"`)',
             None),
}


def document_deprecations(document: dict[str, Any]) -> dict[str, Any]:
    """Mark each deprecated operation of the OpenAPI ``document`` (in place) ``deprecated``, say so in its
    description, and document the three headers on every one of its responses."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            deprecation = DEPRECATIONS.get(operation.get("operationId", ""))
            if deprecation is None:
                continue
            operation["deprecated"] = True
            notice = _notice(deprecation)
            if notice not in operation.get("description", ""):
                operation["description"] = (operation.get("description", "").rstrip() + "\n\n" + notice).strip()
            for status, response in operation.get("responses", {}).items():
                response["headers"] = {**response.get("headers", {}), **_header_specs(deprecation, status != "404")}
    return document


def _notice(deprecation: Deprecation) -> str:
    return (f"**Deprecated** since {deprecation.deprecated_at.date().isoformat()}; sunset "
            f"{deprecation.sunset.date().isoformat()}, then 410 Gone. Use `{deprecation.successor}`; "
            f"migration guide: {deprecation.guide}")


def _header_specs(deprecation: Deprecation, required: bool) -> dict[str, Any]:
    """The headers' documentation; not required on a 404, which a path matching no route (not this
    operation, e.g. an id that is not a UUID) answers too."""
    example = deprecation.headers({name: f"{{{name}}}" for name in _placeholders(deprecation.successor)})
    return {name: {"description": text, "required": required,
                   "schema": {"type": "string", **({"pattern": pattern} if pattern else {})},
                   "example": example[name]}
            for name, (text, pattern) in _HEADER_DOCS.items()}


def _placeholders(template: str) -> list[str]:
    return [part.split("}", 1)[0] for part in template.split("{")[1:]]
