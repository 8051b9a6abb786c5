"""A service's own access token, for calls it makes to another service (zero trust: ADR 0007).

``ServiceTokens`` is the port a service client (``HttpRegistryClient``) depends on: ``token()``
gives a bearer token valid for a while yet, ``invalidate(token)`` drops one the callee refused.
Two adapters:

- :class:`ClientCredentialsTokens`: the OAuth2 client_credentials grant (RFC 6749 §4.4) against
  an authorization server's token endpoint, the client authenticated with HTTP Basic (§2.3.1). The
  request continues the caller's trace and sends its correlation id (``X-Correlation-Id``), so the
  authorization server's lines for it belong to the work that needed the token.
- :class:`DevServiceTokens`: signs its own token with the local development key (no token
  endpoint configured; every service of a development deployment trusts that key).

Both cache the token until shortly before it expires, are thread-safe (one fetch at a time,
concurrent callers wait for it) and take their clock as a parameter, so tests need no sleeps.
Every failure to get a token is a :class:`ServiceTokenError`.
"""

from __future__ import annotations

import base64
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

import httpx

from domain.metadata import current_metadata
from infrastructure.observability.tracing import instrument_http_client
from infrastructure.security.tokens import TokenIssuer

DEFAULT_LIFETIME_SECONDS = 60.0
"""Assumed when a token response has no ``expires_in`` (RFC 6749 makes it only RECOMMENDED)."""


class ServiceTokenError(Exception):
    """No access token could be obtained (token endpoint down, refused our credentials, bad answer)."""


class ServiceTokens(Protocol):
    """Where a service client gets the bearer token it presents."""

    def token(self) -> str:
        """A token valid for a while yet (cached, or fetched now); raises ``ServiceTokenError``."""

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (the callee refused it), so the next ``token()`` gets a fresh one."""


@dataclass(frozen=True)
class _Cached:
    value: str
    refresh_at: float


class CachedTokens:
    """One cached token, refreshed ``margin`` seconds (at most half its life) before it expires.

    Subclasses say how a token is obtained (``_fetch``: the token and its lifetime in seconds).
    """

    def __init__(self, clock: Callable[[], float], margin: float) -> None:
        self._clock = clock
        self._margin = margin
        self._cached: _Cached | None = None
        self._lock = threading.Lock()
        self.fetches = 0
        """How many tokens were obtained (tests and operators read it)."""

    def _fetch(self) -> tuple[str, float]:
        raise NotImplementedError

    def token(self) -> str:
        """The cached token, or a new one; raises ``ServiceTokenError`` when none can be had."""
        with self._lock:
            if self._cached is None or self._clock() >= self._cached.refresh_at:
                started = self._clock()  # the lifetime counts from before the request: conservative
                value, lifetime = self._fetch()
                self.fetches += 1
                self._cached = _Cached(value, started + lifetime - min(self._margin, lifetime / 2))
            return self._cached.value

    def invalidate(self, token: str) -> None:
        """Drop ``token`` if it is the cached one (a newer token is kept)."""
        with self._lock:
            if self._cached is not None and self._cached.value == token:
                self._cached = None


class ClientCredentialsTokens(CachedTokens):
    """Access tokens from ``token_url`` with the client_credentials grant, cached until near expiry."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, scope: str, *,
                 verify: ssl.SSLContext | bool = True, timeout_seconds: float = 2.0,
                 refresh_margin_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock, refresh_margin_seconds)
        self.token_url = token_url
        self.client_id = client_id
        self.scope = scope
        self._secret = client_secret
        self._http = instrument_http_client(httpx.Client(verify=verify, timeout=timeout_seconds, trust_env=False))

    def close(self) -> None:
        """Close the HTTP client's connections."""
        self._http.close()

    def _fetch(self) -> tuple[str, float]:
        headers = {"Accept": "application/json", "Authorization": self._basic()}
        if (correlation_id := current_metadata().correlation_id) is not None:  # the work that needs the token
            headers["X-Correlation-Id"] = correlation_id
        try:
            response = self._http.post(self.token_url, data={"grant_type": "client_credentials", "scope": self.scope},
                                       headers=headers)
        except httpx.HTTPError as error:
            raise ServiceTokenError(f"token endpoint {self.token_url} unreachable: "
                                    f"{type(error).__name__}: {error}") from None
        if response.status_code != 200:
            raise ServiceTokenError(f"token endpoint {self.token_url} refused client {self.client_id!r}: "
                                    f"{response.status_code} {_oauth_error(response)}")
        return _read_token_response(response, self.token_url)

    def _basic(self) -> str:
        """RFC 6749 §2.3.1: id and secret are form-encoded before the Basic encoding."""
        credentials = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
        return "Basic " + base64.b64encode(credentials.encode()).decode("ascii")


class DevServiceTokens(CachedTokens):
    """Tokens this service signs itself with the development key: ``sub`` = ``client_id`` = its name."""

    def __init__(self, issuer: TokenIssuer, service_name: str, scope: str, *, ttl_seconds: int = 300,
                 refresh_margin_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock, refresh_margin_seconds)
        self.issuer = issuer
        self.service_name = service_name
        self.scope = scope
        self.ttl_seconds = ttl_seconds

    def _fetch(self) -> tuple[str, float]:
        token = self.issuer.issue(self.service_name, roles=[], scope=self.scope.split(),
                                  ttl_seconds=self.ttl_seconds, client_id=self.service_name)
        return token, float(self.ttl_seconds)


def _read_token_response(response: httpx.Response, url: str) -> tuple[str, float]:
    """``(access_token, lifetime)`` from an RFC 6749 §5.1 answer; anything else is an error."""
    try:
        body = response.json()
    except ValueError:
        raise ServiceTokenError(f"token endpoint {url} answered 200 with a body that is not JSON") from None
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ServiceTokenError(f"token endpoint {url} answered without an access_token")
    if str(body.get("token_type", "")).lower() != "bearer":
        raise ServiceTokenError(f"token endpoint {url} issued a {body.get('token_type')!r} token, not Bearer")
    lifetime = body.get("expires_in", DEFAULT_LIFETIME_SECONDS)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
        raise ServiceTokenError(f"token endpoint {url} sent an invalid expires_in {lifetime!r}")
    return token, float(lifetime)


def _oauth_error(response: httpx.Response) -> str:
    """The RFC 6749 §5.2 ``error`` (and description) of a refusal, never echoing our credentials."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if not isinstance(body, dict):
        return response.reason_phrase
    description = f" ({str(body['error_description'])[:200]})" if body.get("error_description") else ""
    return f"{str(body.get('error', response.reason_phrase))[:100]}{description}"
