"""Servers for provider verification: an ASGI app on loopback over plain HTTP, a forwarder that
carries the verifier's requests to a mutual-TLS server with a client certificate, and a wrapper
that breaks an app's contract on purpose (for the tests that must see a verification fail).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from tests.integration.http_servers import uvicorn_server

HOST = "127.0.0.1"
HOP_BY_HOP = {b"host", b"connection", b"content-length", b"transfer-encoding", b"content-encoding"}


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


class MtlsForwarder:
    """ASGI app forwarding each request, unchanged, to ``upstream`` over mutual TLS (``context``
    presents a client certificate), and its answer back: what a service mesh's sidecar does for a
    caller that cannot do mTLS itself (here: the Pact verifier)."""

    def __init__(self, upstream: str, context: ssl.SSLContext) -> None:
        self.upstream, self.context = upstream, context

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return  # lifespan: nothing to start
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        async with httpx.AsyncClient(base_url=self.upstream, verify=self.context, trust_env=False) as client:
            answer = await client.request(scope["method"], scope["path"], params=scope["query_string"].decode(),
                                          headers=headers, content=body)
        out = [(k.encode(), v.encode()) for k, v in answer.headers.items() if k.encode().lower() not in HOP_BY_HOP]
        await send({"type": "http.response.start", "status": answer.status_code,
                    "headers": [*out, (b"content-length", str(len(answer.content)).encode())]})
        await send({"type": "http.response.body", "body": answer.content})
