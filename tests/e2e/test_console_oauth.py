"""The console's sign-in as a public OAuth2 client (code + PKCE), over HTTP: what it sends the browser to the
authorization server with, what it keeps meanwhile, and every way a callback is refused. The whole flow
against ``clinic run auth`` behind the gateway, in Chromium: ``tests/e2e/distributed/test_distributed_booking.py``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import uvicorn
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from litestar import Litestar, Request, post
from litestar.testing import TestClient

from application.clinic import Clinic
from interfaces.http.app import create_app
from interfaces.http.console.oauth import PENDING_COOKIE, ConsoleOAuth
from interfaces.http.console.session import COOKIE, Console
from tests.integration.http_servers import uvicorn_server
from tests.kit.console import ISSUER

OAUTH = ConsoleOAuth("clinic-console", "https://auth.example.org/oauth/authorize", "http://127.0.0.1:9/oauth/token",
                     "https://clinic.example.org/console/callback", "audit:read sagas:read sagas:write")


@pytest.fixture
def console() -> Iterator[TestClient[Any]]:
    console = Console(None, oauth=OAUTH, in_process=False, secure_cookie=True)
    app = create_app(Clinic.hosting({}), ISSUER.verifier(), controllers=[], console=console)
    with TestClient(app, base_url="https://clinic.example.org") as client:
        yield client


def test_signing_in_goes_to_the_authorization_server_with_a_fresh_state_and_an_s256_challenge(console):
    sent = console.get("/console/login", follow_redirects=False)
    assert sent.status_code == 302
    url = urlsplit(sent.headers["location"])
    query = {name: values[0] for name, values in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == OAUTH.authorize_url
    assert {name: query[name] for name in ("response_type", "client_id", "redirect_uri", "scope",
                                           "code_challenge_method")} == {
        "response_type": "code", "client_id": "clinic-console", "redirect_uri": OAUTH.redirect_uri,
        "scope": OAUTH.scope, "code_challenge_method": "S256"}
    cookie = sent.headers["set-cookie"]
    state, verifier = console.cookies[PENDING_COOKIE].strip('"').split(".")
    assert query["state"] == state and query["code_challenge"] == create_s256_code_challenge(verifier)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console/callback" in cookie
    assert "Secure" in cookie and "Max-Age=600" in cookie
    again = console.get("/console/login", follow_redirects=False).headers["location"]
    assert parse_qs(urlsplit(again).query)["state"][0] != state  # each sign-in its own


@pytest.mark.parametrize(("query", "pending", "said"), [
    ("error=access_denied", "s.v", "refused the sign-in: access_denied"),
    ("error=invalid_scope&error_description=nothing+to+grant&state=s", "s.v",
     "refused the sign-in: invalid_scope: nothing to grant"),
    ("code=c&state=s", None, "not the one this browser started"),
    ("code=c&state=forged", "s.v", "state does not match"),
    ("state=s", "s.v", "not the one this browser started"),
])
def test_a_callback_that_is_not_this_browsers_sign_in_is_refused(console, query, pending, said):
    if pending is not None:
        console.cookies.set(PENDING_COOKIE, pending, path="/console/callback")
    refused = console.get(f"/console/callback?{query}", follow_redirects=False)
    assert refused.status_code == 400 and said in refused.text and "Sign in again" in refused.text
    assert COOKIE not in refused.headers.get("set-cookie", "")


def test_a_token_endpoint_that_does_not_answer_is_a_503_page(console):
    console.cookies.set(PENDING_COOKIE, "s.v", path="/console/callback")
    page = console.get("/console/callback?code=c&state=s", follow_redirects=False)
    assert page.status_code == 503 and page.headers["Retry-After"]


def test_without_a_session_every_page_sends_the_browser_to_sign_in_and_home_is_the_dead_letters(console):
    assert console.get("/console/", follow_redirects=False).headers["location"] == "/console/dead-letters"
    assert console.get("/console/sagas", follow_redirects=False).status_code == 404  # no stores read here


@pytest.fixture
def token_endpoint() -> Iterator[tuple[str, list[dict[str, str]], dict[str, str]]]:
    """A token endpoint the test runs: it answers any code with a token of ISSUER for whoever ``subject``
    names (the roles the test chose), and records what it was sent."""
    sent: list[dict[str, str]] = []
    subject = {"sub": "pat-1", "role": "PATIENT"}

    @post("/oauth/token", status_code=200)
    async def token(request: Request[Any, Any, Any]) -> dict[str, Any]:
        sent.append(dict(await request.form()))
        return {"access_token": ISSUER.issue(subject["sub"], [subject["role"]]), "token_type": "Bearer",
                "expires_in": 300}

    app = Litestar([token])
    with uvicorn_server(lambda port: uvicorn.Config(app, port=port, log_config=None)) as port:
        yield f"http://127.0.0.1:{port}/oauth/token", sent, subject


def signed_in_through(token_url: str, role_subject: dict[str, str], role: str) -> TestClient[Any]:
    role_subject["role"] = role
    console = Console(None, oauth=dataclasses.replace(OAUTH, token_url=token_url), in_process=False)
    return TestClient(create_app(Clinic.hosting({}), ISSUER.verifier(), controllers=[], console=console),
                      base_url="https://clinic.example.org")


@pytest.mark.parametrize(("role", "admitted"), [("ADMIN", True), ("AUDITOR", True), ("PATIENT", False),
                                                ("DOCTOR", False)])
def test_the_code_is_exchanged_with_its_verifier_and_only_an_operator_is_admitted(token_endpoint, role, admitted):
    token_url, sent, subject = token_endpoint
    with signed_in_through(token_url, subject, role) as console:
        console.get("/console/login", follow_redirects=False)
        state, verifier = console.cookies[PENDING_COOKIE].strip('"').split(".")
        back = console.get(f"/console/callback?code=the-code&state={state}", follow_redirects=False)
    assert sent[-1] == {"grant_type": "authorization_code", "code": "the-code", "redirect_uri": OAUTH.redirect_uri,
                        "client_id": "clinic-console", "code_verifier": verifier}  # a public client: no secret
    if admitted:
        assert (back.status_code, back.headers["location"]) == (303, "/console/dead-letters")
        session = next(c for c in back.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}="))
        assert "HttpOnly" in session and "SameSite=strict" in session and "Path=/console" in session
    else:
        assert back.status_code == 400 and "for admins and auditors" in back.text
        assert not any(c.startswith(f"{COOKIE}=") for c in back.headers.get_list("set-cookie"))
