"""The registry's internal API: service-to-service, over HTTPS with client certificates.

Not part of the public API: no OpenAPI document is served and ``specs/openapi.json`` does not
describe it; the contract is the pair ``HttpRegistryClient`` / this module, tested together in
``tests/integration/test_registry_mtls.py``. Two checks, both required (zero trust, ADR 0007):

1. the TLS handshake: the server (uvicorn) refuses any client without a certificate from the
   clinic CA (ADR 0004); it cannot tell *which* service called (uvicorn does not pass the peer
   certificate on), so a certificate alone authorises nothing;
2. the caller's own access token (``Authorization: Bearer``), verified here with the service's
   ``TokenVerifier``, must carry the operation's scope: no or an invalid token is a 401 with a
   ``WWW-Authenticate: Bearer`` challenge (RFC 6750 §3), a token without the scope a 403.

Health needs only the certificate.
"""

from __future__ import annotations

import inspect
import ssl
from typing import Annotated, Any
from uuid import UUID

import anyio.to_thread
import uvicorn
from litestar import Litestar, Request, Response, get
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import QueryParameter, SkipValidation
from msgspec import Struct
from opentelemetry.trace import TracerProvider

from application.registry import RegistryApplication
from infrastructure.observability.metrics import Metrics
from infrastructure.registry_client import ELIGIBILITY_PATH
from infrastructure.security.scopes import Scope
from infrastructure.security.tokens import InvalidTokenError, Principal, TokenVerifier
from infrastructure.tls import Pki, server_ssl_context
from interfaces.http import authorization
from interfaces.http.metrics import instrument
from interfaces.http.middleware import correlation_middleware, echo_correlation_id
from interfaces.http.problems import problem_response
from interfaces.http.schemas import Health
from interfaces.http.tracing import route_span_names, tracing_plugins

HEALTH_PATH = "/internal/health"
REALM = "clinic-internal"


class _Challenged:
    """An authentication or authorisation refusal that names its RFC 6750 ``WWW-Authenticate`` challenge."""

    challenge: str


class MissingTokenError(_Challenged, NotAuthorizedException):
    """The call carries no bearer token."""

    challenge = f'Bearer realm="{REALM}"'


class RefusedTokenError(_Challenged, NotAuthorizedException):
    """The bearer token is malformed, badly signed, expired or for another audience."""

    challenge = f'Bearer realm="{REALM}", error="invalid_token"'


class InsufficientScopeError(_Challenged, authorization.InsufficientScopeError):
    """The token is valid but lacks the scope the operation needs (the public API's 403 type)."""

    def __init__(self, scope: Scope) -> None:
        super().__init__((scope,))
        self.challenge = f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'


def requires_scope(scope: Scope) -> Any:
    """A guard: the caller's bearer token is valid (the app's verifier) and carries ``scope``."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = await _authenticate(connection)
        if not principal.has_scope(scope):
            raise InsufficientScopeError(scope)

    return guard


async def _authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MissingTokenError("a bearer token is required (Authorization: Bearer <service access token>)")
    verifier: TokenVerifier = connection.app.state.verifier
    try:  # in a thread: the verifier may fetch the issuer's JWKS
        return await anyio.to_thread.run_sync(verifier.verify, token.strip())
    except InvalidTokenError as error:
        raise RefusedTokenError(f"invalid bearer token: {error}") from None


def internal_problem(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """The public API's problem+json, with this API's precise ``WWW-Authenticate`` challenge."""
    response = problem_response(request, error)
    if isinstance(error, _Challenged):
        response.headers["WWW-Authenticate"] = error.challenge
    return response


class EligibilityAnswer(Struct):
    """``{"allowed": true, "reason": null}`` or ``{"allowed": false, "reason": "doctor_inactive"}``."""

    allowed: bool
    reason: str | None


@get(ELIGIBILITY_PATH, sync_to_thread=True, guards=[requires_scope(Scope.REGISTRY_ELIGIBILITY)])
def eligibility(registry: NamedDependency[SkipValidation[RegistryApplication]],
                patient_id: Annotated[UUID, QueryParameter(required=True)],
                doctor_id: Annotated[UUID, QueryParameter(required=True)]) -> EligibilityAnswer:
    """May this patient book this doctor? (a refusal is a 200 with the reason, not an error).

    The registry is injected as is (not type-checked per request), so tests can stand in a
    registry that fails on cue.
    """
    answer = registry.booking_eligibility(patient_id, doctor_id)
    return EligibilityAnswer(allowed=answer.allowed, reason=answer.reason.value if answer.reason else None)


@get(HEALTH_PATH, sync_to_thread=False)
def health() -> Health:
    """The process is up and serving over mTLS (no token needed: probes hold only a certificate)."""
    return Health(status="ok")


def create_internal_registry_app(registry: RegistryApplication, verifier: TokenVerifier,
                                 metrics: Metrics | None = None, tracer_provider: TracerProvider | None = None) -> Litestar:
    """The internal API over ``registry``, trusting tokens ``verifier`` accepts; serve it with
    :func:`internal_server_config`. Its requests count in ``metrics`` (exposed on the public port)
    and, with ``tracer_provider``, continue the caller's trace."""
    return instrument(Litestar(
        route_handlers=[eligibility, health],
        dependencies={"registry": Provide(lambda: registry, use_cache=True, sync_to_thread=False)},
        middleware=[correlation_middleware, route_span_names],
        before_send=[echo_correlation_id],
        exception_handlers={Exception: internal_problem},
        logging_config=None,  # logs go through the root logger's JSON handler (configure_logging)
        state=State({"verifier": verifier}),
        openapi_config=None,
        plugins=tracing_plugins(tracer_provider),
    ), metrics, serve=False)


def internal_server_config(app: Litestar, pki: Pki, *, service: str = "registry", host: str = "127.0.0.1",
                           port: int = 8443, **options: Any) -> uvicorn.Config:
    """A uvicorn configuration serving ``app`` over HTTPS that requires a client certificate.

    The file options make uvicorn itself demand a certificate from the CA
    (``ssl_cert_reqs=CERT_REQUIRED`` + ``ssl_ca_certs``); where uvicorn accepts
    ``ssl_context_factory`` (0.54 here), the context is ours, which also refuses TLS < 1.2.
    """
    tls: dict[str, Any] = {
        "ssl_certfile": str(pki.cert_file(service)),
        "ssl_keyfile": str(pki.key_file(service)),
        "ssl_ca_certs": str(pki.ca_file),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }
    if "ssl_context_factory" in inspect.signature(uvicorn.Config).parameters:
        tls["ssl_context_factory"] = lambda _config, _default: server_ssl_context(pki, service)
    return uvicorn.Config(app, host=host, port=port, **tls, **options)
