"""``clinic run auth`` as an OS process: both grants, errors, limits, discovery and key rotation, over HTTP."""

from __future__ import annotations

import http.server
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jws

from infrastructure.security.jwks import JwksKeySource, discover_jwks_url
from infrastructure.security.tokens import TokenVerifier
from interfaces.local_deployment import oauth_client as oauth
from interfaces.local_deployment.oauth_client import pkce
from tests.clocks import SecondsClock

CLINIC = [sys.executable, "-m", "interfaces.cli.main"]
ROOT = Path(__file__).resolve().parents[2]
AUDIENCE = "clinic-api"
PASSWORD = "ana's long password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Callback:
    """The client's redirect URI: a real HTTP server in the test that records what it was sent."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        recorded = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                recorded.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"signed in")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/callback"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class AuthServer:
    """A running ``clinic run auth`` with a confidential service client, a public web client and a patient."""

    tmp: Path
    callback: Callback
    limits: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    secret: str = ""
    process: subprocess.Popen | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CLINIC_DATA_DIR": str(self.tmp / "data"), "CLINIC_JWT_ISSUER": self.issuer,
                "CLINIC_JWT_AUDIENCE": AUDIENCE, **self.limits}

    def clinic(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess:
        return subprocess.run([*CLINIC, *args], cwd=ROOT, env={**self.env, **(env or {})}, input=stdin,
                              capture_output=True, text=True, timeout=60)

    def start(self) -> None:
        added = self.clinic("auth", "client", "add", "booking-svc", "--scope", "slots:read", "--scope",
                            "registry:eligibility", "--role", "ADMIN")
        assert added.returncode == 0, added.stderr
        self.secret = added.stdout.strip()
        assert self.clinic("auth", "client", "add", "web", "--public", "--scope", "slots:read", "--scope",
                           "consultations:read", "--scope", "notes:read", "--redirect-uri",
                           self.callback.uri).returncode == 0
        assert self.clinic("auth", "user", "add", "ana", "--sub", "patient-1", "--role", "PATIENT",
                           "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
        log = open(self.tmp / "auth.log", "w")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen([*CLINIC, "run", "auth", "--port", str(self.port)], cwd=ROOT, env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT)
        self._wait_until_ready()

    def _wait_until_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"clinic run auth exited: {(self.tmp / 'auth.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.issuer}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)  # the port is not bound yet: nothing to wait on but time
        raise AssertionError("clinic run auth did not become ready")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            assert self.process.wait(timeout=15) == 0

    def token(self, **form: str) -> httpx.Response:
        return httpx.post(f"{self.issuer}/oauth/token", data={"grant_type": "client_credentials", **form},
                          auth=("booking-svc", self.secret), timeout=10)

    def verifier(self, **source: float) -> TokenVerifier:
        return TokenVerifier(JwksKeySource(f"{self.issuer}/.well-known/jwks.json", **source), self.issuer, AUDIENCE)


@pytest.fixture(scope="module")
def callback() -> Iterator[Callback]:
    server = Callback()
    yield server
    server.close()


@pytest.fixture(scope="module")
def auth(tmp_path_factory, callback) -> Iterator[AuthServer]:
    server = AuthServer(tmp_path_factory.mktemp("auth"), callback,
                        {"CLINIC_AUTH_TOKEN_RATE_LIMIT": "1000/minute", "CLINIC_AUTH_LOGIN_RATE_LIMIT": "1000/minute"})
    server.start()
    yield server
    server.stop()


def authorization_request(auth: AuthServer, challenge: str, scope: str = "slots:read consultations:read",
                          state: str = "st-123") -> dict[str, str]:
    return {"response_type": "code", "client_id": "web", "redirect_uri": auth.callback.uri, "scope": scope,
            "state": state, "code_challenge": challenge, "code_challenge_method": "S256"}


def sign_in(auth: AuthServer, browser: httpx.Client, query: dict[str, str], password: str = PASSWORD
            ) -> httpx.Response:
    """What a browser does: GET the form, POST it back with the credentials, follow the redirect."""
    return oauth.sign_in(browser, auth.issuer, query, "ana", password)


def code_from(response: httpx.Response) -> dict[str, list[str]]:
    return oauth.query_of(str(response.url))


def exchange(auth: AuthServer, code: str, verifier: str) -> httpx.Response:
    return httpx.post(f"{auth.issuer}/oauth/token", timeout=10, data={
        "grant_type": "authorization_code", "code": code, "client_id": "web", "redirect_uri": auth.callback.uri,
        "code_verifier": verifier})


def kid(token: str) -> str:
    return jws.extract_compact(token.encode()).headers()["kid"]


def test_client_credentials_token_verifies_against_the_published_jwks(auth):
    response = auth.token(scope="slots:read")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 300, "slots:read")
    principal = auth.verifier().verify(body["access_token"])
    assert (principal.sub, principal.client_id, principal.roles, principal.scope) == (
        "booking-svc", "booking-svc", frozenset({"ADMIN"}), frozenset({"slots:read"}))
    assert jws.extract_compact(body["access_token"].encode()).headers()["typ"] == "at+jwt"


def test_without_a_scope_the_client_gets_every_scope_it_was_registered_with(auth):
    assert auth.token().json()["scope"] == "registry:eligibility slots:read"


def test_a_wrong_secret_is_401_invalid_client(auth):
    response = httpx.post(f"{auth.issuer}/oauth/token", data={"grant_type": "client_credentials"},
                          auth=("booking-svc", "not-the-secret"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


def test_the_password_grant_is_an_unsupported_grant_type(auth):
    response = auth.token(grant_type="password", username="ana", password=PASSWORD)
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


def test_a_scope_the_client_was_not_registered_with_is_invalid_scope(auth):
    response = auth.token(scope="notes:write")
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


def test_code_flow_with_pkce_gives_the_user_a_token_with_their_roles_scopes(auth):
    verifier, challenge = pkce()
    with httpx.Client(timeout=10) as browser:
        landed = sign_in(auth, browser, authorization_request(auth, challenge, "slots:read notes:read"))
    assert landed.status_code == 200 and landed.text == "signed in"  # the client's callback answered
    params = code_from(landed)
    assert params["state"] == ["st-123"]

    response = exchange(auth, params["code"][0], verifier)

    assert response.status_code == 200, response.text
    principal = auth.verifier().verify(response.json()["access_token"])
    # notes:read is the client's but not a patient's: it is left out
    assert (principal.sub, principal.roles, principal.scope, principal.client_id) == (
        "patient-1", frozenset({"PATIENT"}), frozenset({"slots:read"}), "web")


def test_a_wrong_verifier_or_a_reused_code_is_invalid_grant(auth):
    verifier, challenge = pkce()
    with httpx.Client(timeout=10) as browser:
        first = code_from(sign_in(auth, browser, authorization_request(auth, challenge)))["code"][0]
        second = code_from(sign_in(auth, browser, authorization_request(auth, challenge)))["code"][0]

    wrong = exchange(auth, first, pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert exchange(auth, first, verifier).json()["error"] == "invalid_grant"  # spent by the failed attempt
    assert exchange(auth, second, verifier).status_code == 200
    replay = exchange(auth, second, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"


def test_a_code_request_without_pkce_or_with_plain_goes_back_to_the_client_as_an_error(auth):
    query = authorization_request(auth, pkce()[1])
    for broken in ({k: v for k, v in query.items() if not k.startswith("code_challenge")},
                   {**query, "code_challenge_method": "plain"}):
        response = httpx.get(f"{auth.issuer}/oauth/authorize", params=broken)
        assert response.status_code == 302
        location = parse_qs(urlsplit(response.headers["location"]).query)
        assert location["error"] == ["invalid_request"] and location["state"] == ["st-123"]


def test_an_unregistered_redirect_uri_is_refused_without_redirecting(auth):
    query = {**authorization_request(auth, pkce()[1]), "redirect_uri": "https://evil.test/cb"}
    response = httpx.get(f"{auth.issuer}/oauth/authorize", params=query)
    assert response.status_code == 400 and "location" not in response.headers
    assert response.json()["error"] == "invalid_request"


def test_a_bad_password_shows_the_form_again_and_gives_no_code(auth):
    seen = len(auth.callback.requests)
    with httpx.Client(timeout=10) as browser:
        response = sign_in(auth, browser, authorization_request(auth, pkce()[1]), password="wrong password")
    assert response.status_code == 200 and not response.history
    assert "Wrong username or password." in response.text and 'name="password"' in response.text
    assert "code=" not in str(response.url) and len(auth.callback.requests) == seen


def test_the_login_page_cannot_be_framed_or_cached(auth):
    page = httpx.get(f"{auth.issuer}/oauth/authorize", params=authorization_request(auth, pkce()[1]))
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"


def test_a_login_post_without_the_forms_csrf_token_is_refused(auth):
    query = authorization_request(auth, pkce()[1])
    response = httpx.post(f"{auth.issuer}/oauth/authorize", data={**query, "username": "ana", "password": PASSWORD})
    assert response.status_code == 403 and "location" not in response.headers


def test_discovery_metadata_names_the_endpoints_and_what_they_support(auth):
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        metadata = httpx.get(auth.issuer + path).json()
        assert metadata["issuer"] == auth.issuer
        assert metadata["token_endpoint"] == f"{auth.issuer}/oauth/token"
        assert metadata["authorization_endpoint"] == f"{auth.issuer}/oauth/authorize"
        assert metadata["jwks_uri"] == f"{auth.issuer}/.well-known/jwks.json"
        assert sorted(metadata["grant_types_supported"]) == ["authorization_code", "client_credentials"]
        assert metadata["code_challenge_methods_supported"] == ["S256"]
        assert metadata["response_types_supported"] == ["code"]
        assert "client_secret_basic" in metadata["token_endpoint_auth_methods_supported"]
        assert "slots:read" in metadata["scopes_supported"]
    assert discover_jwks_url(auth.issuer) == f"{auth.issuer}/.well-known/jwks.json"


def test_the_cli_prints_a_secret_once_and_stores_only_hashes(auth):
    data = auth.tmp / "data" / "auth"
    listing = auth.clinic("auth", "client", "list")
    assert listing.returncode == 0 and "booking-svc\tconfidential" in listing.stdout and "web\tpublic" in listing.stdout
    assert auth.secret not in listing.stdout + listing.stderr
    for name in ("clients.json", "users.json", "signing-keys.json"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600
        assert auth.secret not in (data / name).read_text() and PASSWORD not in (data / name).read_text()
    from_env = auth.clinic("auth", "user", "add", "dr-reis", "--sub", "doctor-1", "--role", "DOCTOR",
                           env={"CLINIC_AUTH_USER_PASSWORD": "another long password"})
    assert from_env.returncode == 0, from_env.stderr
    none = auth.clinic("auth", "user", "add", "nobody", "--sub", "x", "--role", "PATIENT")
    assert none.returncode == 1 and "--password-stdin" in none.stderr
    assert auth.clinic("auth", "user", "add", "x", "--sub", "x", "--role", "PATIENT", "--password", "p").returncode == 2


def test_rotating_keys_twice_while_tokens_are_issued_fails_no_verification(auth):
    clock = SecondsClock(0.0)
    # A resource server's cache: it refetches on an unknown kid at most hourly, and refreshes every 10 minutes.
    source = JwksKeySource(f"{auth.issuer}/.well-known/jwks.json", min_refresh_seconds=3600, max_age_seconds=600,
                           clock=clock)
    verifier = TokenVerifier(source, auth.issuer, AUDIENCE)
    before = auth.token().json()["access_token"]
    verifier.verify(before)
    signing_kids = {kid(before)}
    for _ in range(2):
        verifier.verify(auth.token().json()["access_token"])  # the cache refreshes here when it is due
        fetches = source.fetches
        rotation = subprocess.Popen([*CLINIC, "keys", "rotate"], cwd=ROOT, env=auth.env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
        for _ in range(200):  # bounded: keep asking for tokens while the rotation runs
            if rotation.poll() is not None:
                break
            token = auth.token().json()["access_token"]
            verifier.verify(token)
            signing_kids.add(kid(token))
        assert rotation.wait(timeout=60) == 0, rotation.stdout.read()
        after = auth.token().json()["access_token"]
        verifier.verify(after)  # signed by the key published before the rotation: no fetch was needed
        signing_kids.add(kid(after))
        assert source.fetches == fetches
        clock.advance(601)  # the runbook: rotate no more often than resource servers refresh their JWKS

    assert len(signing_kids) == 3
    assert source.fetches == 2  # the first fetch, then the one periodic refresh between the rotations
    assert TokenVerifier(JwksKeySource(f"{auth.issuer}/.well-known/jwks.json"), auth.issuer, AUDIENCE).verify(before)


def test_too_many_token_requests_or_logins_get_429_with_retry_after(tmp_path, callback):
    limited = AuthServer(tmp_path, callback, {"CLINIC_AUTH_TOKEN_RATE_LIMIT": "3/minute",
                                              "CLINIC_AUTH_LOGIN_RATE_LIMIT": "2/minute"})
    limited.start()
    try:
        assert [limited.token().status_code for _ in range(3)] == [200, 200, 200]
        refused = limited.token()
        assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.json()["error"] == "temporarily_unavailable"
        login = {**authorization_request(limited, pkce()[1]), "username": "ana", "password": "wrong password"}
        statuses = [httpx.post(f"{limited.issuer}/oauth/authorize", data=login).status_code for _ in range(3)]
        assert statuses[:2] == [403, 403] and statuses[2] == 429  # no CSRF token: refused, but counted
    finally:
        limited.stop()
