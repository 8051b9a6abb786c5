"""Bearer JWTs: who is calling (``sub``), as what (``roles``), allowed to do what (``scope``).

Every service validates every token itself (zero trust): the signature against the issuer's
keys (a fixed key set, or a JWKS fetched and cached by :class:`JwksKeySource`), the algorithm
against an allow-list (ES256, RS256: ``none``, HMAC and anything else are refused before any
key is looked at), ``iss``, ``aud``, ``exp`` and ``nbf`` with a small leeway, and ``sub``.
Access tokens follow RFC 9068 (``typ: at+jwt``; ``iss aud sub exp iat jti client_id scope``)
plus ``roles``. The development key that ``clinic token`` signs with and ``clinic serve``
trusts lives in the data directory.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from domain.values import Role
from infrastructure.security.scopes import scopes_for_roles

ALGORITHMS = ("ES256", "RS256")
"""The only signature algorithms accepted; asymmetric, so no verifier can mint tokens."""
DEV_KEY_FILE = "dev-signing-key.json"
ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt", "JWT")
"""RFC 9068 ``typ``; plain ``JWT`` too, as Keycloak and others still send it (absent is allowed)."""


class InvalidTokenError(Exception):
    """The bearer token is missing, malformed, badly signed, expired or for someone else."""


class KeySource(Protocol):
    """Where a verifier finds the public key a token names in its ``kid``."""

    def keys_for(self, kid: str | None) -> KeySet:
        """The trusted keys, refreshed if ``kid`` is not among them and a refresh is allowed."""


@dataclass(frozen=True)
class StaticKeys:
    """A fixed set of trusted public keys (the development key, a test's keys)."""

    keys: KeySet

    def keys_for(self, kid: str | None) -> KeySet:
        return self.keys


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    sub: str
    roles: frozenset[str]
    scope: frozenset[str]
    client_id: str | None = None

    def has_role(self, *roles: Role) -> bool:
        return any(role in self.roles for role in roles)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scope


class TokenVerifier:
    """Validates bearer tokens against an issuer's public keys."""

    def __init__(self, keys: KeySet | KeySource, issuer: str, audience: str, leeway_seconds: int = 30,
                 roles_claim: str = "roles") -> None:
        self.keys: KeySource = StaticKeys(keys) if isinstance(keys, KeySet) else keys
        self.roles_claim = roles_claim
        self.claims = jwt.JWTClaimsRegistry(
            leeway=leeway_seconds,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    def verify(self, token: str) -> Principal:
        try:
            header = _header(token)
            kid = header.get("kid")
            if kid is not None and not isinstance(kid, str):
                raise ValueError(f"key id {kid!r} is not a string")
            decoded = jwt.decode(token, self.keys.keys_for(kid), algorithms=list(ALGORITHMS))
            self.claims.validate(decoded.claims)
        except (JoseError, ValueError) as error:
            raise InvalidTokenError(_describe(error)) from None
        return _principal(decoded.claims, self.roles_claim)


class TokenIssuer:
    """Signs RFC 9068 access tokens with one private key (the development key, or a test's)."""

    def __init__(self, key: ECKey | RSAKey, issuer: str, audience: str) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience

    def issue(self, sub: str, roles: Iterable[str], scope: Iterable[str] | None = None, ttl_seconds: int = 3600,
              client_id: str = "clinic-cli", **extra: object) -> str:
        """A token for ``sub``; ``scope`` defaults to everything ``roles`` may be granted."""
        roles = sorted(roles)
        granted = scopes_for_roles(roles) if scope is None else scope
        now = int(time.time())
        claims = {"sub": sub, "iss": self.issuer, "aud": self.audience, "iat": now, "exp": now + ttl_seconds,
                  "jti": str(uuid.uuid4()), "client_id": client_id, "roles": roles,
                  "scope": " ".join(sorted(granted)), **extra}
        alg = "ES256" if isinstance(self.key, ECKey) else "RS256"
        return jwt.encode({"alg": alg, "kid": self.key.kid, "typ": "at+jwt"}, claims, self.key)

    def verifier(self) -> TokenVerifier:
        return TokenVerifier(public_keys([self.key]), self.issuer, self.audience)


def public_keys(keys: Iterable[ECKey | RSAKey]) -> KeySet:
    """The public halves of ``keys``, as a key set (what a JWKS publishes)."""
    return KeySet([type(key).import_key(key.as_dict(private=False)) for key in keys])


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


def _header(token: str) -> dict[str, object]:
    """The token's protected header, after refusing any algorithm or type we do not accept."""
    header = jws.extract_compact(token.encode("ascii")).headers()
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise ValueError(f"algorithm {alg!r} is not accepted (only {', '.join(ALGORITHMS)})")
    if "typ" in header and header["typ"] not in ACCESS_TOKEN_TYPES:
        raise ValueError(f"token type {header['typ']!r} is not an access token")
    if any(name in header for name in ("jku", "x5u", "jwk")):
        raise ValueError("tokens may not say where to find their own key (jku, x5u, jwk)")
    return header


def _principal(claims: dict, roles_claim: str) -> Principal:
    roles = _claim_path(claims, roles_claim) or []
    scope = claims.get("scope", "")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidTokenError(f"claim {roles_claim!r} must be a list of strings")
    if not isinstance(scope, str):
        raise InvalidTokenError("claim 'scope' must be a space-separated string")
    client_id = claims.get("client_id", claims.get("azp"))
    return Principal(sub=str(claims["sub"]), roles=frozenset(roles), scope=frozenset(scope.split()),
                     client_id=str(client_id) if client_id is not None else None)


def _claim_path(claims: dict, path: str) -> object:
    """``realm_access.roles`` (Keycloak) walks nested objects; ``roles`` is a top-level claim."""
    value: object = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _describe(error: Exception) -> str:
    description = getattr(error, "description", None) or str(error) or type(error).__name__
    return f"{getattr(error, 'error', 'invalid_token')}: {description}"
