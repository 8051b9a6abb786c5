"""The registry's internal API: service-to-service, over HTTPS with client certificates.

Not part of the public API: no OpenAPI document is served and ``specs/openapi.json`` does not
describe it; the contract is the pair ``HttpRegistryClient`` / this module, tested together in
``tests/integration/test_registry_mtls.py``. Authentication is the TLS handshake itself: the
server (uvicorn) refuses any client without a certificate from the clinic CA. The application
cannot see *which* service called (uvicorn does not pass the peer certificate on), so every
holder of a clinic certificate may ask (ADR 0004).
"""

from __future__ import annotations

import inspect
import ssl
from typing import Annotated, Any
from uuid import UUID

import uvicorn
from litestar import Litestar, get
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter, SkipValidation
from msgspec import Struct

from application.registry import RegistryApplication
from infrastructure.tls import Pki, server_ssl_context
from interfaces.http.middleware import correlation_middleware, echo_correlation_id
from interfaces.http.problems import problem_response
from interfaces.http.schemas import Health

ELIGIBILITY_PATH = "/internal/v1/eligibility"
HEALTH_PATH = "/internal/health"


class EligibilityAnswer(Struct):
    """``{"allowed": true, "reason": null}`` or ``{"allowed": false, "reason": "doctor_inactive"}``."""

    allowed: bool
    reason: str | None


@get(ELIGIBILITY_PATH, sync_to_thread=True)
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
    """The process is up and serving over mTLS."""
    return Health(status="ok")


def create_internal_registry_app(registry: RegistryApplication) -> Litestar:
    """The internal API over ``registry``; serve it with :func:`internal_server_config`."""
    return Litestar(
        route_handlers=[eligibility, health],
        dependencies={"registry": Provide(lambda: registry, use_cache=True, sync_to_thread=False)},
        middleware=[correlation_middleware],
        before_send=[echo_correlation_id],
        exception_handlers={Exception: problem_response},
        openapi_config=None,
    )


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
