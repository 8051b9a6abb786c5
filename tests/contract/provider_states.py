"""A test-only state-change endpoint for the Pact verifier.

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

from litestar import Litestar, post
from litestar.params import JSONBody

from tests.contract.servers import serve_plain_http

Setup = Callable[[], dict[str, str] | None]
PATH = "/_pact/provider-states"


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
