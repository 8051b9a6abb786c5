"""Signing operators in through the authorization server (distributed mode, ``clinic run console``): the
console is a public OAuth2 client of ``clinic run auth`` using the authorization code grant with PKCE (S256,
RFC 7636): authlib prepares the authorization request and the challenge, httpx makes the token request.
``/console/login`` sends the browser to the server's sign-in page with a fresh ``state`` and code challenge,
kept meanwhile in a short-lived ``HttpOnly`` cookie scoped to the callback; ``/console/callback`` checks the
``state``, exchanges the code (with its verifier) for the operator's access token and keeps that token in
the console's session cookie, as the development sign-in does. No token is ever in a URL the browser shows
or in script-readable storage."""

from __future__ import annotations

import hmac
import ssl
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from litestar import Controller, Request, Response, get
from litestar.datastructures import Cookie
from litestar.params import QueryParameter
from litestar.response import Redirect

from infrastructure.security.tokens import InvalidTokenError, TokenVerifier
from interfaces.http.console.render import OPEN, page
from interfaces.http.console.session import COOKIE, OPERATORS, PATH, Console, console_of

PENDING_COOKIE = "clinic_console_sign_in"
"""The sign-in under way: its ``state`` and code verifier, until the callback (10 minutes at most)."""
PENDING_SECONDS = 600
CALLBACK = f"{PATH}/callback"


@dataclass(frozen=True)
class ConsoleOAuth:
    """The console as a public client of the authorization server: where browsers sign in (``authorize_url``,
    the issuer's, as browsers reach it), where the console exchanges codes (``token_url``, the server's
    in-cluster endpoint), and the redirect URI registered for the console's client."""

    client_id: str
    authorize_url: str
    token_url: str
    redirect_uri: str
    scope: str
    verify: ssl.SSLContext | bool = True
    """How the token endpoint's certificate is checked (the clinic's CA in a cluster)."""

    def authorization_url(self, state: str, verifier: str) -> str:
        """Where the browser signs in: the authorization request with the S256 challenge of ``verifier``."""
        return prepare_grant_uri(self.authorize_url, self.client_id, "code", self.redirect_uri, self.scope, state,
                                 code_challenge=create_s256_code_challenge(verifier), code_challenge_method="S256")

    async def exchange(self, code: str, verifier: str) -> dict[str, Any]:
        """The token for ``code`` (a public client: its id and the code's verifier, no secret)."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                "client_id": self.client_id, "code_verifier": verifier}
        async with httpx.AsyncClient(verify=self.verify, timeout=10) as client:
            response = await client.post(self.token_url, data=form, headers={"Accept": "application/json"})
        try:
            token: dict[str, Any] = response.json()
        except ValueError:
            token = {}
        if response.status_code != 200 or "access_token" not in token:
            raise SignInFailed(f"the authorization server refused the code: {token.get('error') or response.status_code}")
        return token


class SignInFailed(Exception):
    """The sign-in did not complete (refused at the server, expired, tampered with): said on a page."""


class ConsoleOAuthSignIn(Controller):
    path = PATH
    opt = OPEN
    include_in_schema = False

    @get("/login")
    async def start(self, request: Request[Any, Any, Any]) -> Redirect:
        """Off to the authorization server's sign-in page, with a fresh ``state`` and PKCE challenge."""
        console = console_of(request)
        state, verifier = generate_token(32), generate_token(64)
        url = _oauth(console).authorization_url(state, verifier)
        pending = Cookie(key=PENDING_COOKIE, value=f"{state}.{verifier}", path=CALLBACK, httponly=True,
                         samesite="lax", secure=console.secure_cookie, max_age=PENDING_SECONDS)
        return Redirect(url, status_code=302, cookies=[pending])

    @get("/callback")
    async def finish(self, request: Request[Any, Any, Any],
                     code: Annotated[str | None, QueryParameter(required=False, max_length=512)] = None,
                     returned: Annotated[str | None, QueryParameter(name="state", required=False, max_length=512)] = None,
                     error: Annotated[str | None, QueryParameter(required=False, max_length=200)] = None,
                     error_description: Annotated[str | None, QueryParameter(required=False, max_length=500)] = None,
                     error_uri: Annotated[str | None, QueryParameter(required=False, max_length=500)] = None,
                     iss: Annotated[str | None, QueryParameter(required=False, max_length=500)] = None,
                     ) -> Response[Any]:
        """Back from the sign-in page: the code for the operator's token, or why there is none (RFC 6749
        §4.1.2.1: ``error`` with its description and URI; RFC 9207: the issuer, ``iss``)."""
        console = console_of(request)
        refusal = f"{error}: {error_description}" if error and error_description else error
        try:
            token = await _exchange(console, request.cookies.get(PENDING_COOKIE), code, returned, refusal)
            await _require_operator(request.app.state.verifier, token)
        except SignInFailed as failed:
            return page("sign_in_failed.html.j2", request, status_code=400, detail=str(failed))
        session = Cookie(key=COOKIE, value=token["access_token"], path=PATH, httponly=True, samesite="strict",
                         secure=console.secure_cookie, max_age=int(token.get("expires_in") or 300))
        done = Cookie(key=PENDING_COOKIE, value="", path=CALLBACK, httponly=True, samesite="lax", max_age=0)
        return Redirect(console.home, status_code=303, cookies=[session, done])


async def _exchange(console: Console, pending: str | None, code: str | None, state: str | None,
                    error: str | None) -> dict[str, Any]:
    if error:
        raise SignInFailed(f"the authorization server refused the sign-in: {error}")
    expected, _, verifier = (pending or "").partition(".")
    if not expected or not verifier or not code or not state:
        raise SignInFailed("this sign-in is not the one this browser started, or it took longer than 10 minutes")
    if not hmac.compare_digest(expected, state):
        raise SignInFailed("the sign-in's state does not match the one this browser started")
    try:
        return await _oauth(console).exchange(code, verifier)
    except httpx.HTTPError as unreachable:
        raise ConnectionError(f"the authorization server's token endpoint is not answering: {unreachable}") from None


async def _require_operator(verifier: TokenVerifier, token: dict[str, Any]) -> None:
    try:
        principal = await anyio.to_thread.run_sync(verifier.verify, token.get("access_token", ""))
    except InvalidTokenError as invalid:
        raise SignInFailed(f"the token the authorization server gave is not valid here: {invalid}") from None
    if not principal.has_role(*OPERATORS):
        raise SignInFailed("the console is for admins and auditors; your account is neither")



def _oauth(console: Console) -> ConsoleOAuth:
    if console.oauth is None:
        raise RuntimeError("this console signs operators in without an authorization server")
    return console.oauth
