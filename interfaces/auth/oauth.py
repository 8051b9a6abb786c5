"""authlib's framework-agnostic authorization server, configured for this system.

Two grants: ``client_credentials`` (confidential clients: services, machines) and
``authorization_code`` with PKCE (S256 only, required of every client). No password grant,
no implicit grant, no refresh tokens. Access tokens are RFC 9068 JWTs signed ES256 by the
key ring's current key (:class:`infrastructure.security.tokens.TokenIssuer`); they are
self-contained, so nothing is stored when one is issued.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, OAuth2Payload, OAuth2Request, grants
from authlib.oauth2.rfc6749.errors import InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc7636 import CodeChallenge

from infrastructure.security.scopes import Scope, scopes_for_roles
from infrastructure.security.tokens import TokenIssuer
from interfaces.auth.accounts import SECRET_METHODS, Accounts, Client, User
from interfaces.auth.keyring import KeyRingFile

log = logging.getLogger("clinic.auth")
CODE_LIFETIME_SECONDS = 60


@dataclass(frozen=True)
class OAuthResponse:
    """What authlib answers, before it becomes an HTTP response."""

    status: int
    body: dict[str, object] | str
    headers: list[tuple[str, str]]


class FormPayload(OAuth2Payload):
    """Request parameters (query string or form body), every value of each kept for duplicate checks."""

    def __init__(self, datalist: dict[str, list[str]]) -> None:
        self._datalist = datalist
        self._data = {name: values[0] for name, values in datalist.items() if values}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._datalist


class FormRequest(OAuth2Request):
    """An OAuth2 request built from what the Litestar handler read."""

    def __init__(self, method: str, uri: str, headers: object, datalist: dict[str, list[str]]) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = FormPayload(datalist)

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data

    @property
    def args(self) -> dict[str, str]:
        return self.payload.data


@dataclass(frozen=True)
class AuthorizationCode(AuthorizationCodeMixin):
    """One issued code: bound to its client, redirect URI, PKCE challenge and user."""

    code: str
    client_id: str
    redirect_uri: str | None
    scope: str
    username: str
    code_challenge: str
    code_challenge_method: str
    expires_at: float

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


class CodeStore:
    """Authorization codes in this process's memory: single use, short-lived.

    A code is removed the first time anyone presents it, whatever happens next, so a
    second attempt (a replay, or a retry after a wrong ``code_verifier``) fails.
    """

    def __init__(self, lifetime_seconds: float = CODE_LIFETIME_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime_seconds = lifetime_seconds
        self.clock = clock
        self._codes: dict[str, AuthorizationCode] = {}
        self._lock = threading.Lock()

    def save(self, code: AuthorizationCode) -> None:
        with self._lock:
            now = self.clock()
            self._codes = {k: v for k, v in self._codes.items() if v.expires_at > now}
            self._codes[code.code] = code

    def take(self, code: str, client_id: str) -> AuthorizationCode | None:
        """The code if it exists, has not expired and was issued to ``client_id``; removed either way."""
        with self._lock:
            found = self._codes.pop(code, None)
        if found is None or found.expires_at <= self.clock() or found.client_id != client_id:
            return None
        return found


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """Services and machine clients: scope = requested ∩ registered (all registered when none requested)."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(SECRET_METHODS)

    def validate_token_request(self) -> None:
        super().validate_token_request()
        if self.client.get_allowed_scope(self.request.payload.scope) is None:
            raise InvalidScopeError("None of the requested scopes is allowed for this client.")


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    """People, through a client: scope = requested ∩ client's ∩ what the user's roles may be granted."""

    TOKEN_ENDPOINT_AUTH_METHODS = [*SECRET_METHODS, "none"]

    def create_authorization_response(self, redirect_uri: str, grant_user: User) -> tuple:
        scope = set(self.request.scope.split()) & scopes_for_roles(grant_user.roles)
        if not scope:
            raise InvalidScopeError("None of the requested scopes is open to this user.", redirect_uri=redirect_uri)
        self.request.scope = " ".join(sorted(scope))
        return super().create_authorization_response(redirect_uri, grant_user)

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        self.server.codes.save(AuthorizationCode(
            code=code, client_id=request.client.client_id, redirect_uri=request.payload.redirect_uri,
            scope=request.scope, username=request.user.username, code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            expires_at=self.server.codes.clock() + self.server.codes.lifetime_seconds))

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        return self.server.codes.take(code, client.client_id)

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Nothing left to do: :meth:`CodeStore.take` removed the code when it was presented."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User | None:
        return self.server.accounts.user(authorization_code.username)  # None if removed since: invalid_grant


class S256CodeChallenge(CodeChallenge):
    """PKCE (RFC 7636), required of every client, with S256 only (``plain`` gives no protection)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: grants.BaseGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge and code_challenge_method=S256.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported.")
        super().validate_code_challenge(grant, redirect_uri)


class ClinicAuthorizationServer(AuthorizationServer):
    """The grants above, clients and users from the auth directory, tokens signed by the key ring."""

    def __init__(self, accounts: Accounts, keys: KeyRingFile, issuer: str, audience: str,
                 ttl_seconds: int, codes: CodeStore | None = None) -> None:
        super().__init__(scopes_supported=sorted(str(s) for s in Scope))
        self.accounts, self.keys, self.codes = accounts, keys, codes or CodeStore()
        self.issuer, self.audience, self.ttl_seconds = issuer, audience, ttl_seconds
        self.register_grant(ClientCredentialsGrant)
        self.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True)])
        self.register_token_generator("default", self.generate_access_token)

    def query_client(self, client_id: str) -> Client | None:
        return self.accounts.client(client_id)

    def save_token(self, token: dict[str, object], request: OAuth2Request) -> None:
        """Nothing to store: access tokens are self-contained JWTs (no revocation list, no refresh tokens)."""

    def send_signal(self, name: str, *args: object, **kwargs: object) -> None:
        """authlib's hook after a client authenticated: logged (the client id only, never a secret)."""
        client = kwargs.get("client")
        log.debug("%s: %s", name, getattr(client, "client_id", None))

    def create_oauth2_request(self, request: FormRequest) -> FormRequest:
        return request

    def handle_response(self, status: int, body: dict[str, object] | str,
                        headers: list[tuple[str, str]]) -> OAuthResponse:
        return OAuthResponse(status, body, list(headers))

    def generate_access_token(self, grant_type: str, client: Client, user: User | None = None,
                              scope: str | None = None, expires_in: int | None = None,
                              include_refresh_token: bool = False) -> dict[str, object]:
        """An RFC 9068 access token: ``sub`` is the user (code flow) or the client (client credentials)."""
        granted = set((client.get_allowed_scope(scope) or "").split())
        sub, roles = (user.sub, user.roles) if user else (client.client_id, client.roles)
        if user is not None:
            granted &= scopes_for_roles(user.roles)
        issuer = TokenIssuer(self.keys.ring().current().private_key(), self.issuer, self.audience)
        token = issuer.issue(sub, roles, scope=sorted(granted), ttl_seconds=self.ttl_seconds,
                             client_id=client.client_id)
        log.info("issued a %s token to client %s", grant_type, client.client_id)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.ttl_seconds,
                "scope": " ".join(sorted(granted))}
