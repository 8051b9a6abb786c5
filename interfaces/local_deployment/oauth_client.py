"""What an OAuth2 public client does to get a person's token: PKCE, the browser's sign-in, the code exchange."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlsplit

import httpx


class SignInError(RuntimeError):
    """The authorization server did not give the expected form, redirect or token."""


def pkce() -> tuple[str, str]:
    """A fresh code verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def sign_in(browser: httpx.Client, issuer: str, query: dict[str, str], username: str, password: str,
            follow_redirects: bool = True) -> httpx.Response:
    """What a browser does: GET the login form, POST it back with the credentials (and its CSRF token)."""
    form = browser.get(f"{issuer}/oauth/authorize", params=query)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    if form.status_code != 200 or csrf is None:
        raise SignInError(f"no login form at {issuer}/oauth/authorize: {form.status_code} {form.text[:300]}")
    return browser.post(f"{issuer}/oauth/authorize", follow_redirects=follow_redirects,
                        data={**query, "csrf": csrf.group(1), "username": username, "password": password})


def query_of(url: str) -> dict[str, list[str]]:
    """The query parameters of ``url`` (a redirect's ``code`` and ``state``)."""
    return parse_qs(urlsplit(url).query)


def user_token(issuer: str, client_id: str, redirect_uri: str, username: str, password: str, scope: str) -> str:
    """Log in with the code flow + PKCE, as a public client would, and return the access token."""
    verifier, challenge = pkce()
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope,
             "state": secrets.token_urlsafe(8), "code_challenge": challenge, "code_challenge_method": "S256"}
    with httpx.Client(timeout=10) as browser:
        redirect = sign_in(browser, issuer, query, username, password, follow_redirects=False)
        if redirect.status_code not in (302, 303):
            raise SignInError(f"sign-in as {username} was not redirected: {redirect.status_code} {redirect.text[:300]}")
        code = query_of(redirect.headers["location"])["code"][0]
        response = browser.post(f"{issuer}/oauth/token", data={
            "grant_type": "authorization_code", "code": code, "client_id": client_id, "redirect_uri": redirect_uri,
            "code_verifier": verifier})
    if response.status_code != 200:
        raise SignInError(f"the code exchange failed: {response.status_code} {response.text[:300]}")
    return response.json()["access_token"]
