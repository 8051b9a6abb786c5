"""Client secrets and user passwords, stored as Argon2id hashes (argon2-cffi, RFC 9106 parameters).

Verification is argon2's own: it recomputes the hash and compares in constant time. An
unknown user is checked against a dummy hash, so a wrong username takes as long as a wrong
password (the response time does not tell which usernames exist).
"""

from __future__ import annotations

import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
MIN_PASSWORD_LENGTH = 8


@cache
def _dummy() -> str:
    """The hash unknown accounts are checked against: made on first use (it costs a hashing, ~0.1 s)."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def hash_secret(plain: str) -> str:
    """An Argon2id hash of ``plain`` (salted; the PHC string carries its parameters)."""
    return _HASHER.hash(plain)


def verify_secret(hashed: str | None, plain: str) -> bool:
    """Whether ``plain`` matches ``hashed``; ``hashed=None`` (no such account) costs the same and fails."""
    try:
        return _HASHER.verify(hashed or _dummy(), plain) and hashed is not None
    except (VerificationError, InvalidHashError):
        return False


def new_client_secret() -> str:
    """A fresh client secret: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def check_password(plain: str) -> str:
    """``plain`` if it is long enough to be a password (NIST SP 800-63B: at least 8 characters)."""
    if len(plain) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return plain
