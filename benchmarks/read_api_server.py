"""The server process of the read API benchmark: one of three apps under one uvicorn config.

``python -m benchmarks.read_api_server MODE PORT`` with ``CLINIC_*`` settings in the environment:

- ``ours``: the consultations service's API as ``clinic run consultations --role api`` builds it
  (``build_service`` over Redis read models, ``create_app`` with ``SERVICE_CONTROLLERS``,
  metrics, JSON logs);
- ``trivial-in-app``: the same app plus ``GET /bench/trivial`` returning a constant, public and
  excluded from authentication (everything else still runs: correlation id, headers, metrics, the
  app-wide checks, the event metadata);
- ``trivial-bare``: a Litestar app with only that route.

The uvicorn config is the one ``clinic run`` uses (``log_level="info"``, ``log_config=None``, the access
line as ``CLINIC_ACCESS_LOG`` says (off by default), loop and HTTP parser ``auto``: uvloop and
httptools, dependencies since ADR 0014);
``--loop`` and ``--http`` choose uvicorn's event loop and HTTP parser, ``--no-token-cache`` turns the
verified-token cache off (the levers measured).
"""

from __future__ import annotations

import argparse
import os

import uvicorn
from litestar import Litestar, get

from application.services import build_service
from application.settings import Settings
from infrastructure.observability.logging import configure_logging
from infrastructure.observability.metrics import Metrics
from infrastructure.security.tokens import TokenVerifier
from interfaces.http.app import create_app
from interfaces.http.contexts import SERVICE_CONTROLLERS
from interfaces.security.trust import token_verifier

TRIVIAL_PATH = "/bench/trivial"


@get(TRIVIAL_PATH, operation_id="benchTrivial", opt={"exclude_from_auth": True, "public": True},
     include_in_schema=False)
async def trivial() -> dict[str, str]:
    """A constant: what serving a request costs before any handler work."""
    return {"status": "ok"}


def verifier(settings: Settings, cache: bool) -> TokenVerifier:
    """The services' verifier (it caches verified tokens), or, without ``cache``, one that checks every time."""
    caching = token_verifier(settings)
    if cache:
        return caching
    return TokenVerifier(caching.keys, settings.jwt_issuer, settings.jwt_audience, settings.jwt_leeway_seconds,
                         settings.jwt_roles_claim)


def build(mode: str, settings: Settings, cache: bool = True) -> Litestar:
    """The app for ``mode`` (see the module docstring)."""
    if mode == "trivial-bare":
        return Litestar(route_handlers=[trivial], logging_config=None, openapi_config=None)
    metrics = Metrics.for_service("consultations")
    clinic = build_service("consultations", settings, role="api", metrics=metrics)
    controllers = list(SERVICE_CONTROLLERS["consultations"]) + ([trivial] if mode == "trivial-in-app" else [])
    return create_app(clinic, verifier(settings, cache), controllers=controllers, close_clinic_on_shutdown=True,
                      max_request_bytes=settings.max_request_bytes, metrics=metrics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["ours", "trivial-in-app", "trivial-bare"])
    parser.add_argument("port", type=int)
    parser.add_argument("--loop", default="auto", choices=["asyncio", "uvloop", "auto"])
    parser.add_argument("--http", default="auto", choices=["h11", "httptools", "auto"])
    parser.add_argument("--no-token-cache", action="store_true", help="verify every token's signature")
    args = parser.parse_args()
    settings = Settings.from_env(os.environ)
    configure_logging("consultations", settings.log_level, json=settings.log_format == "json")
    app = build(args.mode, settings, cache=not args.no_token_cache)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info", log_config=None, loop=args.loop,
                http=args.http, access_log=settings.access_log)


if __name__ == "__main__":
    main()
