"""Real HTTP servers for the integration tests: uvicorn in a thread, and a tiny OAuth2 token endpoint.

The token endpoint implements only what a service client needs, by the RFC: the
client_credentials grant (RFC 6749 §4.4), clients authenticated with HTTP Basic (§2.3.1, id and
secret form-encoded first), §5.1 answers and §5.2 errors. It is a test double of an
authorization server, not the clinic's own (``interfaces/auth/``); tests change ``issuer`` to
simulate a key rotation and read ``requests``.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import unquote

import httpx
import uvicorn
from litestar import Litestar, Request, Response, post

from infrastructure.security.tokens import TokenIssuer

WAIT = 5.0
"""Upper bound on any wait for something that should happen at once."""


@contextmanager
def uvicorn_server(make_config: Callable[[int], uvicorn.Config]) -> Iterator[int]:
    """Serve in a background thread on a free port bound beforehand; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(make_config(port))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"uvicorn-{port}")
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:  # bounded poll for the server to be up
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(WAIT)
        sock.close()


@contextmanager
def client_of(app: object, timeout: float = 20) -> Iterator[httpx.Client]:
    """An httpx client of ``app`` served by uvicorn on a loopback port (a real server: a stream stays open)."""
    config = lambda port: uvicorn.Config(app, port=port, log_config=None, lifespan="on")  # noqa: E731
    with uvicorn_server(config) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=timeout) as client:
        yield client


class TokenEndpoint:
    """``POST /token``: client_credentials for registered clients, tokens signed by ``issuer``."""

    def __init__(self, issuer: TokenIssuer, clients: dict[str, tuple[str, set[str]]], expires_in: int = 300) -> None:
        self.issuer = issuer
        self.clients = clients
        """client_id -> (secret, the scopes it may be granted)."""
        self.expires_in = expires_in
        self.omit_expires_in = False
        self.requests = 0
        self.correlation_ids: list[str | None] = []
        """Each request's ``X-Correlation-Id`` (``None`` when it sent none)."""
        self._lock = threading.Lock()

    def app(self) -> Litestar:
        @post("/token", status_code=200)
        async def token(request: Request) -> Response:
            with self._lock:
                self.requests += 1
                self.correlation_ids.append(request.headers.get("x-correlation-id"))
            return self._answer(request.headers.get("authorization", ""), dict(await request.form()))

        return Litestar(route_handlers=[token], openapi_config=None)

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve over plain HTTP on 127.0.0.1; yields the token URL."""
        with uvicorn_server(lambda port: uvicorn.Config(self.app(), host="127.0.0.1", port=port, log_config=None,
                                                        log_level="warning", timeout_graceful_shutdown=1)) as port:
            yield f"http://127.0.0.1:{port}/token"

    def _answer(self, authorization: str, form: dict[str, str]) -> Response:
        client_id = self._authenticated_client(authorization)
        if client_id is None:
            return _error(401, "invalid_client", headers={"WWW-Authenticate": 'Basic realm="token"'})
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type")
        scope = set(form.get("scope", "").split())
        if not scope or not scope <= self.clients[client_id][1]:
            return _error(400, "invalid_scope")
        token = self.issuer.issue(client_id, roles=[], scope=scope, ttl_seconds=self.expires_in, client_id=client_id)
        body: dict[str, object] = {"access_token": token, "token_type": "Bearer", "scope": " ".join(sorted(scope))}
        if not self.omit_expires_in:
            body["expires_in"] = self.expires_in
        return Response(body, headers={"Cache-Control": "no-store"})

    def _authenticated_client(self, authorization: str) -> str | None:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            client_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            return None
        client_id, secret = unquote(client_id), unquote(secret)
        registered = self.clients.get(client_id)
        return client_id if registered is not None and registered[0] == secret else None


def _error(status: int, error: str, headers: dict[str, str] | None = None) -> Response:
    return Response({"error": error}, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})})
