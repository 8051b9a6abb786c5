"""A test-only state-change endpoint for the Pact verifier, and a plain-HTTP server for providers.

The verifier POSTs ``{"state", "action", "params"}`` here before (``setup``) and after
(``teardown``) each interaction. A setup answers a JSON object: the values the verifier injects
into the request wherever the pact says ``generate.provider_state("${name}")`` (the ids the
provider created through its own application services). pact-python's own Python-function state
handler answers no body, so it cannot inject values: hence this endpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from litestar import Litestar, post
from litestar.params import JSONBody

from tests.integration.http_servers import uvicorn_server

Setup = Callable[[], dict[str, str] | None]
PATH = "/_pact/provider-states"
HOST = "127.0.0.1"


class ProviderStates:
    """Named setups, and teardowns run after each interaction (in reverse order of setup)."""

    def __init__(self, setups: dict[str, Setup]) -> None:
        self.setups = setups
        self._teardowns: list[Callable[[], None]] = []
        self.seen: list[str] = []

    def on_teardown(self, undo: Callable[[], None]) -> None:
        self._teardowns.append(undo)

    def change(self, state: str, action: str) -> dict[str, str]:
        if action == "teardown":
            while self._teardowns:
                self._teardowns.pop()()
            return {}
        if state not in self.setups:
            raise LookupError(f"no provider state {state!r}; known: {sorted(self.setups)}")
        self.seen.append(state)
        return self.setups[state]() or {}

    def app(self) -> Litestar:
        @post(PATH, status_code=200, sync_to_thread=True)
        def change(data: JSONBody[dict[str, Any]]) -> dict[str, str]:
            return self.change(str(data.get("state", "")), str(data.get("action", "setup")))

        return Litestar(route_handlers=[change], openapi_config=None, logging_config=None)

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Yields the state-change URL."""
        with serve_plain_http(self.app()) as base_url:
            yield base_url + PATH


@contextmanager
def serve_plain_http(app: Any) -> Iterator[str]:
    """``app`` under uvicorn on loopback, plain HTTP, in a thread; yields its base URL."""
    with uvicorn_server(lambda port: uvicorn.Config(app, host=HOST, port=port, log_config=None,
                                                    log_level="warning", timeout_graceful_shutdown=1)) as port:
        yield f"http://{HOST}:{port}"


class RenameInBody:
    """ASGI wrapper that renames a JSON field in every response: a provider that broke its contract.

    ``old`` and ``new`` have the same length, so ``Content-Length`` stays right.
    """

    def __init__(self, app: Any, old: str, new: str) -> None:
        assert len(old) == len(new)
        self.app, self.old, self.new = app, f'"{old}"'.encode(), f'"{new}"'.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def renaming(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": message.get("body", b"").replace(self.old, self.new)}
            await send(message)

        await self.app(scope, receive, renaming if scope["type"] == "http" else send)
