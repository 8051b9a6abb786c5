"""The authorization server's lines for a request carry its correlation id: a service's token request made
for a booking's saga step is found among that booking's lines."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from application.settings import Settings
from interfaces.auth.app import create_auth_app
from interfaces.auth.keyring import KeyRingFile, utc_now
from interfaces.auth.service import AuthService
from tests.kit.logs import captured_logs

SECRET = "booking-secret-long-enough"


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """This process's log lines, as ``clinic run auth`` writes them, into a buffer (restored afterwards)."""
    with captured_logs("auth") as buffer:
        yield buffer


def test_a_token_requests_lines_carry_the_callers_correlation_id(tmp_path, logged):
    KeyRingFile(tmp_path).init(utc_now())
    service = AuthService.from_settings(Settings(jwt_issuer="http://127.0.0.1:9000"), auth_dir=tmp_path)
    service.accounts.add_client("booking", ["registry:eligibility"], [], [], SECRET)
    with TestClient(create_auth_app(service)) as client:
        answer = client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "registry:eligibility"},
                             auth=("booking", SECRET), headers={"X-Correlation-Id": "booking-42"})
        assert answer.status_code == 200
        client.get("/.well-known/jwks.json")  # none sent: the request gets one of its own
    lines = [json.loads(line) for line in logged.getvalue().splitlines()]
    issued = [line for line in lines if line["event"] == "issued a client_credentials token to client booking"]
    assert [line["correlation_id"] for line in issued] == ["booking-42"]
    authlib = [line for line in lines if line["logger"].startswith("authlib")]  # on the request's worker thread
    assert authlib and {line.get("correlation_id") for line in authlib} == {"booking-42"}
