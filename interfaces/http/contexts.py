"""Each bounded context's part of the public API, declared once: the embedded app's controllers, each
service's controllers and the gateway's routes are derived from ``CONTEXT_CONTROLLERS``.

Every service also serves ``SHARED_CONTROLLERS``: its probes, and the audit of the kinds its
context records (``BoundedContext.audited``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType

from litestar import Controller
from litestar.handlers import HTTPRouteHandler

from application.contexts import BOOKING, BY_SERVICE, CONSULTATIONS, NOTIFICATIONS, REGISTRY, SCHEDULING
from interfaces.http.controllers.consultations import ConsultationController
from interfaces.http.controllers.consultations_v2 import ConsultationV2Controller
from interfaces.http.controllers.health import HealthController
from interfaces.http.controllers.oversight import AuditController, SagaController
from interfaces.http.controllers.queries import AgendaController, PatientConsultationsController
from interfaces.http.controllers.read_models import ReadModelController
from interfaces.http.controllers.registry import DoctorController, PatientController, SlotController
from interfaces.http.controllers.webhooks import WebhookController

CONTEXT_CONTROLLERS: Mapping[str, tuple[type[Controller], ...]] = MappingProxyType({
    REGISTRY.service: (PatientController, DoctorController),
    SCHEDULING.service: (SlotController,),
    CONSULTATIONS.service: (ConsultationController, PatientConsultationsController, AgendaController,
                            ConsultationV2Controller),
    BOOKING.service: (SagaController,),
    NOTIFICATIONS.service: (WebhookController,),
})
"""The controllers of each context's own resources, by service."""

PROJECTIONS = "projections"
"""The projection worker: no context's, it keeps every context's read models and answers for them."""
OPERATIONS_CONTROLLERS: Mapping[str, tuple[type[Controller], ...]] = MappingProxyType({
    PROJECTIONS: (ReadModelController,),
})
"""The resources of the processes that are no context's, by service."""

ROUTED_CONTROLLERS: Mapping[str, tuple[type[Controller], ...]] = MappingProxyType(
    {**CONTEXT_CONTROLLERS, **OPERATIONS_CONTROLLERS})
"""Every service's own part of the public API: what the gateway routes."""

SHARED_CONTROLLERS: tuple[type[Controller], ...] = (AuditController, HealthController)

SERVICE_CONTROLLERS: Mapping[str, list[type[Controller]]] = MappingProxyType(
    {**{service: [*own, *SHARED_CONTROLLERS] for service, own in CONTEXT_CONTROLLERS.items()},
     **{service: [*own, HealthController] for service, own in OPERATIONS_CONTROLLERS.items()}})
"""Distributed mode: each service serves its part of ``/v1`` (the gateway routes)."""

GATEWAY_SERVICES: tuple[str, ...] = tuple(ROUTED_CONTROLLERS)
"""The services behind the gateway, each with its own upstream."""

CONTROLLERS: list[type[Controller]] = [*(c for own in ROUTED_CONTROLLERS.values() for c in own), *SHARED_CONTROLLERS]
"""Embedded mode: the whole public API in one process."""

_PARAMETER = re.compile(r"\{[^}]+\}")


def gateway_routes() -> list[tuple[str, str]]:
    """``(nginx location, service)`` for every context's resources: a prefix per controller path whose
    root one service owns; a regular expression (tried first by nginx) for each route another service
    serves below it; one for each service's audited kinds."""
    owners = _prefix_owners()
    exact = [(f"~ ^{_PARAMETER.sub('[^/]+', path)}$", service) for path, service in context_routes()
             if owners.get(_prefix(path), service) != service]
    prefixes = [(prefix, service) for prefix, service in owners.items()]
    audits = [(f"~ ^/v1/audit/{_alternatives(BY_SERVICE[service].audited)}/", service)
              for service in CONTEXT_CONTROLLERS if BY_SERVICE[service].audited]
    return [*dict.fromkeys(exact), *prefixes, *audits]


def service_for(path: str) -> str:
    """The service that serves ``path``, as the gateway routes it: its regular expressions first, then the
    longest prefix (``LookupError``: no service serves it)."""
    routes = gateway_routes()
    for where, service in routes:
        if where.startswith("~ ") and re.match(where[2:], path):
            return service
    prefixes = [(where, service) for where, service in routes if not where.startswith("~ ") and path.startswith(where)]
    if not prefixes:
        raise LookupError(f"no service serves {path}")
    return max(prefixes, key=lambda route: len(route[0]))[1]


def context_routes() -> Iterator[tuple[str, str]]:
    """Every path a context's own controllers serve (``/v1/doctors/{doctor_id:uuid}/slots``), with its service."""
    for service, controllers in ROUTED_CONTROLLERS.items():
        for controller in controllers:
            for handler in _handlers(controller):
                for path in handler.paths:
                    yield (_path_of(controller) + path).rstrip("/") or "/", service


def _handlers(controller: type[Controller]) -> Iterator[HTTPRouteHandler]:
    for value in vars(controller).values():
        if isinstance(value, HTTPRouteHandler):
            yield value


def _path_of(controller: type[Controller]) -> str:
    """The controller's path: Litestar declares ``path`` as an instance slot, each controller sets it on its class."""
    path = inspect.getattr_static(controller, "path")
    if not isinstance(path, str):
        raise TypeError(f"{controller.__name__} sets no path")
    return path


def _prefix(path: str) -> str:
    """The resource collection a path belongs to: ``/v1/doctors/{id}/slots`` → ``/v1/doctors``."""
    return "/".join(path.split("/")[:3])


def _prefix_owners() -> dict[str, str]:
    """Each collection's owner: the service that serves the collection itself, or else its only server."""
    servers: dict[str, list[str]] = {}
    for path, service in context_routes():
        servers.setdefault(_prefix(path), []).append(service)
    owners = {path: service for path, service in context_routes() if path == _prefix(path)}
    for prefix, services in servers.items():
        owners.setdefault(prefix, services[0] if len(set(services)) == 1 else "")
    unowned = [prefix for prefix, owner in owners.items() if not owner]
    if unowned:
        raise ValueError(f"no service serves the collections {unowned} themselves: the gateway cannot route them")
    return owners


def _alternatives(kinds: Mapping[str, type]) -> str:
    names = list(kinds)
    return names[0] if len(names) == 1 else f"({'|'.join(names)})"
