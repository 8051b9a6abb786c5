"""A client's webhook endpoint for tests: a real HTTP server on a loopback port that records every POST
(headers and raw body) and answers with the statuses a test scripts, then 200."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

WAIT = 10.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def verified(self, secret: str) -> Any:
        """The JSON body, once its Standard Webhooks signature checks out with ``secret`` (raises if not)."""
        return Webhook(secret).verify(self.body, self.headers)


class WebhookReceiver:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.answers: list[int] = []
        """Statuses to answer, in order; once used up, 200."""
        self.received: queue.Queue[Received] = queue.Queue()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/clinic"

    def next(self, timeout: float = WAIT) -> Received:
        """The next POST received (waits for it; fails the test after ``timeout``)."""
        try:
            return self.received.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no webhook arrived within {timeout}s") from None

    def answer(self) -> int:
        with self._lock:
            return self.answers.pop(0) if self.answers else 200


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A receiver on a free loopback port, for the duration of the block."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the standard library's name
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            status = receiver.answer()
            receiver.received.put(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = WebhookReceiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
