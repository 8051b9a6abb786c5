"""A service's own access tokens: client_credentials against a real local token endpoint, and dev tokens.

The clock is injected (a value the test moves), so expiry needs no sleeps; the endpoint counts
the requests it received, which is what caching is about.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from domain.metadata import event_metadata
from infrastructure.security.scopes import Scope
from infrastructure.security.service_tokens import ClientCredentialsTokens, DevServiceTokens, ServiceTokenError
from infrastructure.security.tokens import TokenIssuer
from tests.clocks import SecondsClock
from tests.integration.http_servers import WAIT, TokenEndpoint

SCOPE = Scope.REGISTRY_ELIGIBILITY
SECRET = "s3cr:t/+ é%"  # characters RFC 6749 §2.3.1 form-encodes before the Basic encoding
ISSUER = TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), "clinic-test", "clinic-api")


@pytest.fixture
def endpoint() -> TokenEndpoint:
    return TokenEndpoint(ISSUER, {"booking": (SECRET, {SCOPE})}, expires_in=300)


@pytest.fixture
def token_url(endpoint) -> Iterator[str]:
    with endpoint.serve() as url:
        yield url


@pytest.fixture
def clock() -> SecondsClock:
    return SecondsClock()


@pytest.fixture
def make_tokens(token_url, clock) -> Iterator:
    made: list[ClientCredentialsTokens] = []

    def make(secret: str = SECRET, scope: str = SCOPE, url: str | None = None) -> ClientCredentialsTokens:
        tokens = ClientCredentialsTokens(url or token_url, "booking", secret, scope, clock=clock,
                                         refresh_margin_seconds=30)
        made.append(tokens)
        return tokens

    yield make
    for tokens in made:
        tokens.close()


# client_credentials -----------------------------------------------------------------------------

def test_the_token_names_the_service_and_carries_the_scope(make_tokens):
    principal = ISSUER.verifier().verify(make_tokens().token())
    assert principal.sub == "booking" and principal.client_id == "booking"
    assert principal.scope == {SCOPE} and principal.roles == frozenset()


def test_the_token_is_cached_until_shortly_before_it_expires(make_tokens, endpoint, clock):
    tokens = make_tokens()
    first = tokens.token()
    clock.now += 269  # 300 s lifetime, refreshed 30 s early
    assert tokens.token() == first
    assert endpoint.requests == 1
    clock.now += 1
    second = tokens.token()
    assert second != first and endpoint.requests == 2
    assert tokens.token() == second and endpoint.requests == 2


def test_the_token_request_carries_the_correlation_id_of_the_work_that_needs_it(make_tokens, endpoint, clock):
    # the authorization server's lines for the request then belong to that work (a booking's saga step)
    tokens = make_tokens()
    with event_metadata(correlation_id="booking-42"):
        tokens.token()
    clock.now += 300
    tokens.token()  # outside any work: none sent
    assert endpoint.correlation_ids == ["booking-42", None]


def test_a_short_lived_token_is_refreshed_at_half_its_life(make_tokens, endpoint, clock):
    endpoint.expires_in = 20
    tokens = make_tokens()
    first = tokens.token()
    clock.now += 9.9
    assert tokens.token() == first
    clock.now += 0.1
    assert tokens.token() != first and endpoint.requests == 2


def test_without_expires_in_a_token_is_kept_one_minute_less_the_margin(make_tokens, endpoint, clock):
    endpoint.omit_expires_in = True
    tokens = make_tokens()
    first = tokens.token()
    clock.now += 29.9
    assert tokens.token() == first
    clock.now += 0.1
    assert tokens.token() != first


def test_invalidate_drops_the_cached_token_but_not_a_newer_one(make_tokens, endpoint):
    tokens = make_tokens()
    old = tokens.token()
    tokens.invalidate(old)
    new = tokens.token()
    assert new != old and endpoint.requests == 2
    tokens.invalidate(old)  # a late caller reporting the old token does not drop the new one
    assert tokens.token() == new and endpoint.requests == 2


def test_concurrent_callers_share_one_fetch(make_tokens, endpoint):
    tokens = make_tokens()
    start = threading.Barrier(8)
    seen: list[str] = []

    def call() -> None:
        start.wait(WAIT)
        seen.append(tokens.token())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert len(seen) == 8 and len(set(seen)) == 1
    assert endpoint.requests == 1 and tokens.fetches == 1


def test_a_wrong_secret_is_an_error_that_does_not_echo_the_secret(make_tokens):
    with pytest.raises(ServiceTokenError, match="refused client 'booking': 401 invalid_client") as error:
        make_tokens(secret="guessed-secret").token()
    assert "guessed-secret" not in str(error.value)


def test_a_scope_the_client_may_not_have_is_refused(make_tokens):
    with pytest.raises(ServiceTokenError, match="400 invalid_scope"):
        make_tokens(scope=Scope.AUDIT_READ).token()


def test_an_unreachable_endpoint_is_an_error(make_tokens):
    with socket.create_server(("127.0.0.1", 0)) as sock:
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/token"
    with pytest.raises(ServiceTokenError, match="unreachable: ConnectError"):
        make_tokens(url=closed).token()


def test_a_failed_refresh_is_retried_on_the_next_call(make_tokens, endpoint, clock):
    tokens = make_tokens()
    tokens.token()
    endpoint.clients["booking"] = ("rotated-secret", {SCOPE})  # our secret was rotated away
    clock.now += 300
    with pytest.raises(ServiceTokenError, match="invalid_client"):
        tokens.token()
    endpoint.clients["booking"] = (SECRET, {SCOPE})
    assert ISSUER.verifier().verify(tokens.token()).sub == "booking"
    assert endpoint.requests == 3


# Development tokens -----------------------------------------------------------------------------

def test_dev_tokens_are_signed_for_the_service_with_no_roles():
    tokens = DevServiceTokens(ISSUER, "booking", SCOPE)
    principal = ISSUER.verifier().verify(tokens.token())
    assert (principal.sub, principal.client_id, principal.roles, principal.scope) == (
        "booking", "booking", frozenset(), frozenset({SCOPE}))


def test_dev_tokens_are_cached_and_re_signed_near_expiry_or_when_refused(clock):
    tokens = DevServiceTokens(ISSUER, "booking", SCOPE, ttl_seconds=120, refresh_margin_seconds=30, clock=clock)
    first = tokens.token()
    clock.now += 89
    assert tokens.token() == first and tokens.fetches == 1
    clock.now += 1
    second = tokens.token()
    assert second != first and tokens.fetches == 2
    tokens.invalidate(second)
    assert tokens.token() != second and tokens.fetches == 3


def test_dev_tokens_are_short_lived():
    token = DevServiceTokens(ISSUER, "booking", SCOPE, ttl_seconds=300).token()
    claims = jwt.decode(token, ISSUER.verifier().keys.keys_for(None)).claims
    assert claims["exp"] - claims["iat"] == 300
