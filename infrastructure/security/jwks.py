"""An issuer's signing keys, fetched from its JWKS endpoint and cached.

A token whose ``kid`` is not in the cache makes the source fetch the JWKS again — at most
once per ``min_refresh_seconds``, so a flood of tokens with made-up ``kid`` values cannot
turn into a flood of requests to the issuer. The cache is also refreshed once it is older
than ``max_age_seconds`` (keys the issuer dropped stop being trusted). If the issuer cannot
be reached, the keys already cached keep working.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable

import httpx
from joserfc.jwk import KeySet

from infrastructure.security.tokens import ALGORITHMS

log = logging.getLogger(__name__)


class JwksUnavailableError(ValueError):
    """The issuer's JWKS could not be fetched and no keys are cached yet."""


class JwksKeySource:
    """Public keys from ``url``, cached; thread-safe (HTTP handlers run in a thread pool)."""

    def __init__(self, url: str, *, verify: ssl.SSLContext | bool = True, min_refresh_seconds: float = 30.0,
                 max_age_seconds: float = 300.0, timeout_seconds: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, fetch: Callable[[str], object] | None = None) -> None:
        self.url = url
        self.verify = verify
        self.fetch = fetch or self._get
        """How the JWKS document is fetched: ``url`` -> parsed JSON (HTTP GET by default)."""
        self.min_refresh_seconds = min_refresh_seconds
        self.max_age_seconds = max_age_seconds
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self.fetches = 0
        """How many times the JWKS was requested (tests and operators read it)."""
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def keys_for(self, kid: str | None) -> KeySet:
        with self._lock:
            if self._keys is None or self._too_old() or (self._unknown(kid) and self._may_refresh()):
                self._refresh()
            if self._keys is None:
                raise JwksUnavailableError(f"the issuer's keys could not be fetched from {self.url}")
            return self._keys

    def _unknown(self, kid: str | None) -> bool:
        return kid is not None and all(key.kid != kid for key in self._keys.keys)  # type: ignore[union-attr]

    def _may_refresh(self) -> bool:
        return self.clock() - self._fetched_at >= self.min_refresh_seconds

    def _too_old(self) -> bool:
        return self.clock() - self._fetched_at >= self.max_age_seconds

    def _refresh(self) -> None:
        self._fetched_at = self.clock()
        self.fetches += 1
        try:
            self._keys = _signing_keys(self.fetch(self.url))
        except (httpx.HTTPError, ValueError) as error:
            log.warning("could not refresh the JWKS from %s: %s", self.url, error.__class__.__name__)

    def _get(self, url: str) -> object:
        response = httpx.get(url, verify=self.verify, timeout=self.timeout_seconds)
        response.raise_for_status()
        return response.json()


def _signing_keys(document: object) -> KeySet:
    """The JWKS's keys usable for signatures with an accepted algorithm (others are ignored)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    usable = [key for key in document["keys"] if isinstance(key, dict) and key.get("use", "sig") == "sig"
              and key.get("alg", ALGORITHMS[0]) in ALGORITHMS and key.get("kty") in ("EC", "RSA")]
    return KeySet.import_key_set({"keys": usable})


def discover_jwks_url(issuer: str, *, verify: ssl.SSLContext | bool = True, timeout_seconds: float = 5.0) -> str:
    """The ``jwks_uri`` an issuer publishes in its OAuth2/OIDC discovery metadata."""
    base = issuer.rstrip("/")
    for suffix in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        try:
            response = httpx.get(base + suffix, verify=verify, timeout=timeout_seconds)
        except httpx.HTTPError:
            continue
        if response.status_code == 200 and isinstance(response.json().get("jwks_uri"), str):
            return response.json()["jwks_uri"]
    raise JwksUnavailableError(f"no discovery metadata with a jwks_uri under {issuer}")
