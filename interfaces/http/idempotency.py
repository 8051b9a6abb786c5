"""The ``Idempotency-Key`` request header (IETF httpapi draft) on every state-changing POST.

A client that retries a command after a timeout sends the same key: the repeat is answered with the
first outcome and changes nothing (``application/idempotency.py``). The key is the caller's own:
it is scoped to the token's subject, and its request fingerprint is the operation's method, path and
body as decoded (so key order and whitespace in the JSON do not matter).
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import msgspec
from litestar import Request
from litestar.openapi.spec import Example
from litestar.params import HeaderParameter

from application.idempotency import KEY_LIFETIME, IdempotencyKey

IDEMPOTENCY_KEY = "Idempotency-Key"
_KEY_CHARACTERS = r"[!#-\[\]-~]{1,255}"
KEY_PATTERN = f'^("{_KEY_CHARACTERS}"|{_KEY_CHARACTERS})$'
"""A structured-field string (``"…"``) or the same characters bare: 1–255 printable ASCII, no quote or
backslash inside."""
IdempotencyKeyHeader = Annotated[str | None, HeaderParameter(
    name=IDEMPOTENCY_KEY, required=False, pattern=KEY_PATTERN,
    examples=[Example(summary="a UUID the client made for this command", value='"8e03978e-40d5-43e8-bc93-6894a57f9324"')],
    description=f"Makes a retry safe: a repeat with the same key and body within {KEY_LIFETIME.total_seconds() / 3600:g} "
                "hours returns the first outcome without acting again; the same key with another body (or on "
                "another resource) is a 422 `idempotency-key-reused` problem. Keys are the caller's own")]


def idempotency_key(request: Request[Any, Any, Any], header: str | None, body: Any = None) -> IdempotencyKey | None:
    """The caller's key for this request, with its fingerprint (``None``: no header, no idempotency)."""
    if header is None:
        return None
    encoded = msgspec.json.encode(body) if body is not None else b""
    fingerprint = hashlib.sha256(f"{request.method} {request.url.path}\n".encode() + encoded).hexdigest()
    return IdempotencyKey(scope=str(request.user.sub), key=header.strip('"'), request=fingerprint)
