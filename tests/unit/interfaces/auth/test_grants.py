"""Which scopes a token gets, codes' single use, and the limits on the token endpoint and login form."""

from __future__ import annotations

import stat

import pytest
from joserfc import jwt

from interfaces.auth.accounts import AccountExistsError, Accounts
from interfaces.auth.keyring import KeyRingFile, utc_now
from interfaces.auth.oauth import AuthorizationCode, ClinicAuthorizationServer, CodeStore
from interfaces.auth.ratelimit import RateLimits
from tests.clocks import SecondsClock


@pytest.fixture
def accounts(tmp_path) -> Accounts:
    return Accounts(tmp_path)


@pytest.fixture
def server(tmp_path, accounts) -> ClinicAuthorizationServer:
    keys = KeyRingFile(tmp_path)
    keys.init(utc_now())
    return ClinicAuthorizationServer(accounts, keys, "https://auth.test", "clinic-api", ttl_seconds=300)


def claims(server: ClinicAuthorizationServer, token: str) -> dict:
    return jwt.decode(token, server.keys.ring().current().private_key()).claims


def test_scope_is_the_requested_scopes_the_client_may_have_or_all_of_them_when_none_are_requested(accounts):
    client = accounts.add_client("svc", ["slots:read", "patients:read"], [], [], "s3cret-s3cret")
    assert client.get_allowed_scope(None) == "patients:read slots:read"
    assert client.get_allowed_scope("slots:read notes:write") == "slots:read"
    assert client.get_allowed_scope("notes:write") is None


def test_a_client_credentials_token_is_the_clients_own(server, accounts):
    client = accounts.add_client("svc", ["slots:read", "patients:read"], [], ["ADMIN"], "s3cret-s3cret")
    token = server.generate_access_token("client_credentials", client, scope="slots:read notes:write")
    decoded = claims(server, token["access_token"])
    assert (decoded["sub"], decoded["client_id"], decoded["roles"], decoded["scope"]) == (
        "svc", "svc", ["ADMIN"], "slots:read")
    assert decoded["exp"] - decoded["iat"] == 300 and token["expires_in"] == 300


def test_a_users_token_carries_only_scopes_their_roles_may_be_granted(server, accounts):
    client = accounts.add_client("web", ["slots:read", "notes:read", "audit:read"], ["https://app.test/cb"], [], None)
    user = accounts.add_user("ana", "patient-1", ["PATIENT"], "long enough")
    token = server.generate_access_token("authorization_code", client, user=user, scope="slots:read notes:read")
    decoded = claims(server, token["access_token"])
    assert (decoded["sub"], decoded["roles"], decoded["scope"]) == ("patient-1", ["PATIENT"], "slots:read")


def test_public_clients_use_the_code_flow_only_and_redirect_uris_match_exactly(accounts):
    public = accounts.add_client("web", ["slots:read"], ["http://127.0.0.1:8080/cb"], [], None)
    assert public.check_grant_type("authorization_code") and not public.check_grant_type("client_credentials")
    assert public.check_endpoint_auth_method("none", "token")
    assert not public.check_endpoint_auth_method("client_secret_post", "token")
    assert public.check_redirect_uri("http://127.0.0.1:8080/cb")
    assert not public.check_redirect_uri("http://127.0.0.1:8080/cb/../evil")


@pytest.mark.parametrize("uri", ["http://app.test/cb", "https://app.test/cb#frag", "app.test/cb", "javascript:x"])
def test_a_redirect_uri_must_be_https_or_loopback_without_a_fragment(accounts, uri):
    with pytest.raises(ValueError, match="redirect URI"):
        accounts.add_client("web", ["slots:read"], [uri], [], None)


def test_accounts_are_stored_owner_only_with_hashes_and_registered_once(tmp_path, accounts):
    accounts.add_client("svc", ["slots:read"], [], [], "the-plain-secret")
    accounts.add_user("ana", "p-1", ["PATIENT"], "the-plain-password")
    for path in (accounts.clients_path, accounts.users_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert "the-plain" not in path.read_text() and "$argon2id$" in path.read_text()
    with pytest.raises(AccountExistsError):
        accounts.add_client("svc", ["slots:read"], [], [], "other")
    with pytest.raises(ValueError, match="unknown scopes"):
        accounts.add_client("svc2", ["everything"], [], [], "other")
    with pytest.raises(ValueError, match="unknown roles"):
        accounts.add_user("bob", "p-2", ["ROOT"], "long enough")


def code(value: str, clock: SecondsClock, client_id: str = "web") -> AuthorizationCode:
    return AuthorizationCode(code=value, client_id=client_id, redirect_uri=None, scope="slots:read", username="ana",
                             code_challenge="c" * 43, code_challenge_method="S256", expires_at=clock() + 60)


def test_a_code_is_used_once_only():
    clock = SecondsClock()
    store = CodeStore(clock=clock)
    store.save(code("abc", clock))
    assert store.take("abc", "web") is not None
    assert store.take("abc", "web") is None


def test_a_code_presented_by_another_client_fails_and_is_spent():
    clock = SecondsClock()
    store = CodeStore(clock=clock)
    store.save(code("abc", clock))
    assert store.take("abc", "intruder") is None
    assert store.take("abc", "web") is None


def test_a_code_expires_after_sixty_seconds():
    clock = SecondsClock()
    store = CodeStore(clock=clock)
    store.save(code("young", clock))
    store.save(code("old", clock))
    clock.now += 59
    assert store.take("young", "web") is not None
    clock.now += 1
    assert store.take("old", "web") is None


def test_the_limit_counts_each_key_apart_and_says_how_long_to_wait():
    limits = RateLimits(token="2/minute", login="1/minute")
    assert limits.retry_after(limits.token, ("ip", "10.0.0.1")) is None
    assert limits.retry_after(limits.token, ("ip", "10.0.0.1")) is None
    wait = limits.retry_after(limits.token, ("ip", "10.0.0.1"))
    assert wait is not None and 1 <= wait <= 60
    assert limits.retry_after(limits.token, ("ip", "10.0.0.2")) is None
    assert limits.retry_after(limits.login, ("ip", "10.0.0.1")) is None


def test_a_request_over_the_client_limit_is_refused_even_from_a_fresh_ip():
    limits = RateLimits(token="1/minute", login="1/minute")
    assert limits.retry_after(limits.token, ("ip", "a"), ("client", "svc")) is None
    assert limits.retry_after(limits.token, ("ip", "b"), ("client", "svc")) is not None


def test_a_malformed_limit_names_its_variable():
    with pytest.raises(ValueError, match="CLINIC_AUTH_TOKEN_RATE_LIMIT"):
        RateLimits(token="lots", login="1/minute")
