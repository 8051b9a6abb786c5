"""The paths each `clinic run <service>` process really serves, read from its route handlers.

The manifests' probes, the Dockerfile's HEALTHCHECK and the Ingress are compared with these, so a
renamed route fails a deployment test instead of a rollout.
"""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler


def controller_paths(controllers: list[type]) -> set[str]:
    paths = set()
    for controller in controllers:
        base = getattr(controller, "path", "/").rstrip("/")
        for value in vars(controller).values():
            if isinstance(value, HTTPRouteHandler):
                paths.update(base + ("" if path == "/" else path) for path in value.paths)
    return paths


def _distributed_console() -> object:
    from infrastructure.messaging.dlq import DeadLetterDesk
    from interfaces.http.console.oauth import ConsoleOAuth
    from interfaces.http.console.session import Console

    oauth = ConsoleOAuth("clinic-console", "https://auth/oauth/authorize", "https://auth/oauth/token",
                         "https://api/console/callback", "")
    return Console(None, oauth=oauth, in_process=False, dead_letters=DeadLetterDesk(lambda: None, {}))  # type: ignore[arg-type, return-value]


def served_paths(service: str, role: str = "api") -> set[str]:
    """What ``clinic run <service> --role <role>`` answers on its HTTP port (interfaces/cli/run.py)."""
    from interfaces.http.console.router import console_pages
    from interfaces.http.contexts import SERVICE_CONTROLLERS
    from interfaces.http.controllers.health import HealthController
    from interfaces.http.metrics import METRICS_PATH

    if service == "auth":
        from interfaces.auth import app as auth_app

        return {path for value in vars(auth_app).values() if isinstance(value, HTTPRouteHandler)
                for path in value.paths} | {METRICS_PATH}
    if service == "console":
        return controller_paths([HealthController, *console_pages(_distributed_console())]) | {METRICS_PATH}
    controllers = SERVICE_CONTROLLERS[service] if role != "worker" or service == "projections" else [HealthController]
    return controller_paths(controllers) | {METRICS_PATH}
