"""What the authorization server's endpoints do, apart from HTTP: one object built at start."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from authlib.common.security import is_secure_transport
from authlib.oauth2.rfc6749 import OAuth2Error, grants

from application.settings import Settings
from infrastructure.security.scopes import Scope
from interfaces.auth.accounts import SECRET_METHODS, Accounts
from interfaces.auth.hashing import verify_secret
from interfaces.auth.keyring import KeyRingFile
from interfaces.auth.oauth import ClinicAuthorizationServer, FormRequest, OAuthResponse
from interfaces.auth.ratelimit import RateLimits

TOKEN_PATH, AUTHORIZE_PATH, JWKS_PATH = "/oauth/token", "/oauth/authorize", "/.well-known/jwks.json"


@dataclass
class AuthService:
    """The authorization server, its clients, users, keys and rate limits, and its public URLs."""

    server: ClinicAuthorizationServer
    accounts: Accounts
    keys: KeyRingFile
    limits: RateLimits
    issuer: str
    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)
    """Extra readiness checks added where the signals live (``clinic run auth``: ``accepting``)."""

    @classmethod
    def from_settings(cls, settings: Settings, auth_dir: Path | None = None) -> AuthService:
        """Everything from ``CLINIC_*``; ``CLINIC_JWT_ISSUER`` must be this server's public base URL."""
        issuer = settings.jwt_issuer
        if not is_secure_transport(issuer) or issuer.endswith("/"):
            raise ValueError(f"CLINIC_JWT_ISSUER={issuer!r}: the authorization server's public base URL, "
                             "https:// (or http:// on a loopback address), without a trailing slash")
        directory = auth_dir or settings.auth
        accounts, keys = Accounts(directory), KeyRingFile(directory)
        server = ClinicAuthorizationServer(accounts, keys, issuer, settings.jwt_audience,
                                           settings.access_token_ttl_seconds)
        limits = RateLimits(settings.auth_token_rate_limit, settings.auth_login_rate_limit)
        return cls(server=server, accounts=accounts, keys=keys, limits=limits, issuer=issuer)

    def url(self, path: str) -> str:
        return self.issuer + path

    def metadata(self) -> dict[str, object]:
        """RFC 8414 authorization server metadata (also served as ``openid-configuration``)."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.url(AUTHORIZE_PATH),
            "token_endpoint": self.url(TOKEN_PATH),
            "jwks_uri": self.url(JWKS_PATH),
            "grant_types_supported": ["authorization_code", "client_credentials"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": [*SECRET_METHODS, "none"],
            "scopes_supported": sorted(str(s) for s in Scope),
        }

    def consent(self, request: FormRequest) -> grants.AuthorizationCodeGrant | OAuthResponse:
        """The validated code grant, or the error to answer (a redirect to the client when it is safe)."""
        try:
            return self.server.get_consent_grant(request)
        except OAuth2Error as error:
            return self.server.handle_error_response(request, error)

    def sign_in(self, request: FormRequest, username: str, password: str
                ) -> grants.AuthorizationCodeGrant | OAuthResponse:
        """A redirect with a code (or an error) when the user is who they say; the grant again (to show the
        form again) when not."""
        grant = self.consent(request)
        if isinstance(grant, OAuthResponse):
            return grant
        user = self.accounts.user(username)
        if not verify_secret(user.password_hash if user else None, password):
            return grant
        return self.server.create_authorization_response(request, grant_user=user, grant=grant)

    def readiness(self) -> dict[str, bool]:
        """The key ring (its file can be read now and holds a current signing key), plus :attr:`checks`.

        No other dependency counts (docs/observability-health.md): the clients and users files are
        read per request, and a missing entry is an OAuth error, not an outage.
        """
        return {"key_ring": self._key_ring_readable()} | {name: check() for name, check in self.checks.items()}

    def _key_ring_readable(self) -> bool:
        try:
            with self.keys.path.open("rb"):  # readable now, not only when it last changed
                pass
            self.keys.ring().current()
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return True
