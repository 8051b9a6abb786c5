"""Liveness and readiness probes: unauthenticated, untraced."""

from __future__ import annotations

from litestar.di import NamedDependency
from litestar import Controller, Response, get
from litestar.openapi import ResponseSpec

from application.clinic import Clinic
from interfaces.http.schemas import Health


class HealthController(Controller):
    path = "/health"
    tags = ["health"]
    security = [{}]

    @get("/live", operation_id="live", sync_to_thread=False)
    def live(self) -> Health:
        """The process is up."""
        return Health(status="ok")

    @get("/ready", operation_id="ready", sync_to_thread=True,
         responses={503: ResponseSpec(data_container=Health, description="A dependency is not ready", generate_examples=False)})
    def ready(self, clinic: NamedDependency[Clinic]) -> Response[Health]:
        """Every event store answers and the saga runner is alive."""
        checks = clinic.readiness()
        ok = all(checks.values())
        return Response(Health(status="ok" if ok else "unavailable", checks=checks), status_code=200 if ok else 503)
