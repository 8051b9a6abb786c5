"""Which issuer's keys a service trusts, from its settings (one place for every entry point)."""

from __future__ import annotations

import threading

from joserfc.jwk import KeySet

from application.settings import Settings
from infrastructure.security.jwks import JwksKeySource, discover_jwks_url
from infrastructure.security.scopes import Scope
from infrastructure.security.token_cache import CachingTokenVerifier
from infrastructure.security.tokens import KeySource, TokenIssuer, TokenVerifier, load_or_create_dev_key
from infrastructure.tls import ca_trust
from interfaces.http.console.oauth import ConsoleOAuth


class DiscoveredJwks:
    """A JWKS source whose URL is looked up in the issuer's discovery metadata on first use.

    Lazy so that a service may start before its issuer does; until discovery succeeds every
    token is refused (401), never accepted.
    """

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self._source: JwksKeySource | None = None
        self._lock = threading.Lock()

    def keys_for(self, kid: str | None) -> KeySet:
        with self._lock:
            if self._source is None:
                self._source = JwksKeySource(discover_jwks_url(self.issuer))
        return self._source.keys_for(kid)


def token_verifier(settings: Settings) -> TokenVerifier:
    """``CLINIC_JWKS_URL``; else discovery when the issuer is a URL; else the development key.

    Verified tokens are remembered for a while (``CachingTokenVerifier``: bounded, never past ``exp``).
    """
    keys: KeySource
    if settings.jwks_url:
        keys = JwksKeySource(settings.jwks_url, verify=ca_trust(settings.auth_ca_file))
    elif not uses_dev_key(settings):
        keys = DiscoveredJwks(settings.jwt_issuer)
    else:
        keys = dev_issuer(settings).verifier().keys
    return CachingTokenVerifier(keys, settings.jwt_issuer, settings.jwt_audience, settings.jwt_leeway_seconds,
                                settings.jwt_roles_claim)


def uses_dev_key(settings: Settings) -> bool:
    """Tokens are signed by the development key in the data directory (no JWKS, no issuer URL)."""
    return not settings.jwks_url and not settings.jwt_issuer.startswith(("https://", "http://"))


def dev_issuer(settings: Settings) -> TokenIssuer:
    """Signs with the development key in the data directory (``clinic token``, ``clinic serve``)."""
    return TokenIssuer(load_or_create_dev_key(settings.data_dir), settings.jwt_issuer, settings.jwt_audience)


CONSOLE_SCOPES = (Scope.SAGAS_READ, Scope.SAGAS_WRITE, Scope.AUDIT_READ, Scope.READ_MODELS_READ,
                  Scope.READ_MODELS_REBUILD)
"""What the console asks for on an operator's behalf (the server grants what their roles allow)."""


def console_oauth(settings: Settings) -> ConsoleOAuth:
    """The console as a public client of the authorization server: browsers sign in at the issuer, the code
    is exchanged at its token endpoint (the in-cluster one when ``CLINIC_OAUTH_TOKEN_URL`` names it)."""
    return ConsoleOAuth(settings.console_client_id, f"{settings.jwt_issuer}/oauth/authorize",
                        settings.oauth_token_url or f"{settings.jwt_issuer}/oauth/token",
                        f"{settings.console_url}/console/callback", " ".join(CONSOLE_SCOPES),
                        verify=ca_trust(settings.auth_ca_file))
