"""The public API's per-request plumbing (interfaces/http/middleware.py) beyond what the e2e tests see:
ids, headers a handler set itself, and that probes and app-wide checks never take a worker thread."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey
from litestar import Litestar, Response, get

from application.bootstrap import bootstrap
from application.clinic import Clinic
from application.settings import Settings
from infrastructure.observability.metrics import Metrics
from infrastructure.security.tokens import TokenIssuer
from interfaces.http.app import create_app
from interfaces.http.middleware import SECURITY_HEADERS, ApiMiddleware, new_id


class NoThreads(ThreadPoolExecutor):
    """A default executor that refuses work: whatever asks it for a worker thread fails the request."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        raise AssertionError(f"{fn!r} asked for a worker thread")


@pytest.fixture
def clinic() -> Iterator[Clinic]:
    clinic = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05))
    yield clinic
    clinic.close()


def answers(app: Any, *requests: tuple[str, str, dict[str, str]]) -> list[httpx.Response]:
    """The app's answers to ``requests`` (method, path, headers), on a loop with no worker threads."""

    async def scenario() -> list[httpx.Response]:
        asyncio.get_running_loop().set_default_executor(NoThreads())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            return [await client.request(method, path, headers=headers) for method, path, headers in requests]

    return asyncio.run(scenario())


def test_new_ids_are_random_version_4_uuids_as_uuid4_writes_them():
    ids = [new_id() for _ in range(1000)]
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_never_hands_out_its_parents_next_id():
    new_id()  # the parent holds a batch of ids it has not handed out yet
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its next id, to the parent, then out
        os.write(writing, new_id().encode())
        os._exit(0)
    os.close(writing)
    os.waitpid(child, 0)
    with os.fdopen(reading) as pipe:
        assert pipe.read() != new_id()


def test_probes_refusals_and_unknown_routes_are_answered_without_a_worker_thread(clinic):
    issuer = TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), "clinic-dev", "clinic-api")
    app = create_app(clinic, issuer.verifier(), metrics=Metrics("test-api"))
    live, unauthenticated, unmatched, scrape = answers(
        app, ("GET", "/health/live", {}), ("GET", f"/v1/consultations/{uuid.uuid4()}", {}),
        ("GET", "/v1/nowhere", {}), ("GET", "/metrics", {}))
    assert (live.status_code, unauthenticated.status_code, unmatched.status_code, scrape.status_code) == (
        200, 401, 404, 200)


@get("/own", sync_to_thread=False)
def own_headers() -> Response[str]:
    return Response("x", headers={"Cache-Control": "max-age=60", "X-Correlation-Id": "forged", "Link": "<a>"})


def test_headers_the_handler_set_are_kept_but_the_correlation_id_and_the_hooks_headers_win():
    app = Litestar(route_handlers=[own_headers], logging_config=None, openapi_config=None)
    app.asgi_handler = ApiMiddleware(app.asgi_handler, hooks=[lambda scope: {"Link": "<b>"}])
    [response] = answers(app, ("GET", "/own", {"X-Correlation-Id": "corr-1"}))
    assert response.headers.get_list("cache-control") == ["max-age=60"]
    assert response.headers.get_list("x-correlation-id") == ["corr-1"]
    assert response.headers.get_list("link") == ["<b>"]
    assert all(response.headers[name] for name in SECURITY_HEADERS if name != "Cache-Control")
