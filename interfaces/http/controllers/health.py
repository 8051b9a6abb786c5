"""Liveness and readiness probes: unauthenticated, untraced.

Liveness answers from the event loop and touches nothing else: a dependency being down must
never restart the pod. Readiness asks the dependencies this service and role need (see
``Clinic.readiness_checks`` and docs/observability-health.md), concurrently, each for at most
0.8 s, and keeps the answer for a second; a failing read-model store only degrades it.
"""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example

from application.clinic import Clinic
from interfaces.http.schemas import Health

NOT_READY = Example(summary="The event store did not answer within a second",
                    value={"status": "unavailable", "checks": {"postgres": False, "runner": True}})


class HealthController(Controller):
    path = "/health"
    tags = ["health"]
    security = [{}]

    @get("/live", operation_id="live", summary="Liveness probe")
    async def live(self) -> Health:
        """The process and its event loop answer (no dependency is asked)."""
        return Health(status="ok")

    @get("/ready", operation_id="ready", summary="Readiness probe",
         responses={503: ResponseSpec(data_container=Health, description="A dependency is not ready",
                                      generate_examples=False, examples=[NOT_READY])})
    async def ready(self, clinic: NamedDependency[Clinic]) -> Response[Health]:
        """Each dependency this service and role need answers (``checks``: one entry per dependency)."""
        checks = await clinic.readiness.check()
        status = clinic.readiness.status(checks)
        return Response(Health(status=status, checks=checks), status_code=503 if status == "unavailable" else 200)
