"""Bearer JWTs: who is calling (``sub``), as what (``roles``), allowed to do what (``scope``).

Tokens are ES256 or RS256, checked with joserfc: signature against the trusted
keys, ``iss``, ``aud``, ``exp`` and ``sub``. The development key that
``clinic token`` signs with and ``clinic serve`` trusts lives in the data directory.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from domain.values import Role

ALGORITHMS = ["ES256", "RS256"]
DEV_KEY_FILE = "dev-signing-key.json"


class InvalidTokenError(Exception):
    """The bearer token is missing, malformed, badly signed, expired or for someone else."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    sub: str
    roles: frozenset[str]
    scope: frozenset[str]

    def has_role(self, *roles: Role) -> bool:
        return any(role in self.roles for role in roles)


class TokenVerifier:
    """Validates bearer tokens against trusted public keys."""

    def __init__(self, keys: KeySet, issuer: str, audience: str, leeway_seconds: int = 30) -> None:
        self.keys = keys
        self.claims = jwt.JWTClaimsRegistry(
            leeway=leeway_seconds,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    def verify(self, token: str) -> Principal:
        try:
            decoded = jwt.decode(token, self.keys, algorithms=ALGORITHMS)
            self.claims.validate(decoded.claims)
        except (JoseError, ValueError) as error:
            raise InvalidTokenError(_describe(error)) from None
        return _principal(decoded.claims)


class TokenIssuer:
    """Signs tokens with one private key (the development key, or a test's)."""

    def __init__(self, key: ECKey, issuer: str, audience: str) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience

    def issue(self, sub: str, roles: Iterable[str], scope: Iterable[str] = (), ttl_seconds: int = 3600) -> str:
        now = int(time.time())
        claims = {"sub": sub, "iss": self.issuer, "aud": self.audience, "iat": now,
                  "exp": now + ttl_seconds, "roles": sorted(roles), "scope": " ".join(scope)}
        return jwt.encode({"alg": "ES256", "kid": self.key.kid}, claims, self.key)

    def verifier(self) -> TokenVerifier:
        return TokenVerifier(public_keys([self.key]), self.issuer, self.audience)


def public_keys(keys: Iterable[ECKey]) -> KeySet:
    return KeySet([ECKey.import_key(key.as_dict(private=False)) for key in keys])


def load_or_create_dev_key(data_dir: Path) -> ECKey:
    """The development signing key, created (readable by its owner only) on first use."""
    path = data_dir / DEV_KEY_FILE
    if path.exists():
        return ECKey.import_key(json.loads(path.read_text()))
    data_dir.mkdir(parents=True, exist_ok=True)
    key = ECKey.generate_key("P-256", auto_kid=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(key.as_dict(private=True), file)
    return key


def _principal(claims: dict) -> Principal:
    roles = claims.get("roles", [])
    scope = claims.get("scope", "")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidTokenError("claim 'roles' must be a list of strings")
    if not isinstance(scope, str):
        raise InvalidTokenError("claim 'scope' must be a space-separated string")
    return Principal(sub=str(claims["sub"]), roles=frozenset(roles), scope=frozenset(scope.split()))


def _describe(error: Exception) -> str:
    description = getattr(error, "description", None) or str(error) or type(error).__name__
    return f"{getattr(error, 'error', 'invalid_token')}: {description}"
