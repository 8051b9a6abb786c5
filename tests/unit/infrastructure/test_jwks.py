"""The resource servers' token checks: the JWKS cache, and what the verifier refuses before any key."""

from __future__ import annotations

import base64
import json
import time

import pytest
from joserfc.jwk import ECKey, KeySet, RSAKey

from infrastructure.security.jwks import JwksKeySource, JwksUnavailableError
from infrastructure.security.tokens import InvalidTokenError, TokenIssuer, TokenVerifier
from tests.clocks import SecondsClock

ISSUER, AUDIENCE = "https://auth.clinic.example", "clinic-api"


class Issuer:
    """The issuer's JWKS endpoint, as a fetch function (our own port: JwksKeySource.fetch)."""

    def __init__(self, *keys: ECKey | RSAKey) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.down = False

    def __call__(self, url: str) -> object:
        self.fetches += 1
        if self.down:
            raise ValueError("connection refused")
        return {"keys": [k.as_dict(private=False) | {"use": "sig"} for k in self.keys]}


def new_key() -> ECKey:
    return ECKey.generate_key("P-256", auto_kid=True)


def test_a_known_kid_is_served_from_the_cache():
    key, clock = new_key(), SecondsClock()
    issuer = Issuer(key)
    source = JwksKeySource("u", fetch=issuer, clock=clock)
    for _ in range(5):
        source.keys_for(key.kid)
    assert issuer.fetches == 1


def test_an_unknown_kid_refetches_at_most_once_per_interval():
    key, clock = new_key(), SecondsClock()
    issuer = Issuer(key)
    source = JwksKeySource("u", fetch=issuer, clock=clock, min_refresh_seconds=30)
    source.keys_for(key.kid)
    for _ in range(100):  # a flood of made-up kids
        source.keys_for("made-up")
    assert issuer.fetches == 1
    clock.now += 30
    source.keys_for("made-up")
    assert issuer.fetches == 2


def test_a_new_key_is_found_by_refetching_on_its_unknown_kid():
    old, rotated, clock = new_key(), new_key(), SecondsClock()
    issuer = Issuer(old)
    source = JwksKeySource("u", fetch=issuer, clock=clock, min_refresh_seconds=30)
    source.keys_for(old.kid)
    issuer.keys.append(rotated)
    clock.now += 31
    assert rotated.kid in {k.kid for k in source.keys_for(rotated.kid).keys}


def test_an_old_cache_is_refreshed_so_dropped_keys_stop_being_trusted():
    dropped, kept, clock = new_key(), new_key(), SecondsClock()
    issuer = Issuer(dropped, kept)
    source = JwksKeySource("u", fetch=issuer, clock=clock, max_age_seconds=300)
    source.keys_for(kept.kid)
    issuer.keys = [kept]
    clock.now += 300
    assert {k.kid for k in source.keys_for(kept.kid).keys} == {kept.kid}


def test_an_unreachable_issuer_keeps_the_cached_keys_and_without_any_is_an_error():
    key, clock = new_key(), SecondsClock()
    issuer = Issuer(key)
    source = JwksKeySource("u", fetch=issuer, clock=clock, max_age_seconds=10)
    source.keys_for(key.kid)
    issuer.down = True
    clock.now += 60
    assert {k.kid for k in source.keys_for(key.kid).keys} == {key.kid}
    with pytest.raises(JwksUnavailableError):
        JwksKeySource("u", fetch=issuer, clock=clock).keys_for(key.kid)


def test_keys_for_encryption_or_other_algorithms_are_not_trusted():
    signing, encrypting = new_key(), new_key()
    document = {"keys": [signing.as_dict(private=False) | {"use": "sig", "alg": "ES256"},
                         encrypting.as_dict(private=False) | {"use": "enc"},
                         {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]}
    source = JwksKeySource("u", fetch=lambda url: document)
    assert {k.kid for k in source.keys_for(signing.kid).keys} == {signing.kid}


def _token(header: dict, claims: dict, key: ECKey) -> str:
    from joserfc import jwt

    return jwt.encode(header, claims, key, algorithms=[header["alg"]])


def _claims(**changes: object) -> dict:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "s-1", "exp": now + 60, "iat": now} | changes


@pytest.mark.parametrize("header", [{"typ": "JWT+id"}, {"jku": "https://evil.example/jwks"},
                                    {"x5u": "https://evil.example/cert"}], ids=["an ID token type", "jku", "x5u"])
def test_tokens_that_name_another_type_or_their_own_key_location_are_refused(header):
    key = new_key()
    token = _token({"alg": "ES256", "kid": key.kid, **header}, _claims(), key)
    with pytest.raises(InvalidTokenError):
        TokenVerifier(KeySet([key]), ISSUER, AUDIENCE).verify(token)


def test_an_embedded_jwk_header_is_refused_even_when_it_is_the_signing_key():
    key = new_key()
    token = _token({"alg": "ES256", "kid": key.kid, "jwk": key.as_dict(private=False)}, _claims(), key)
    with pytest.raises(InvalidTokenError, match="jku, x5u, jwk"):
        TokenVerifier(KeySet([key]), ISSUER, AUDIENCE).verify(token)


def test_an_rs256_token_from_a_trusted_rsa_key_is_accepted_and_rs512_is_not():
    key = RSAKey.generate_key(2048, auto_kid=True)
    verifier = TokenVerifier(KeySet([key]), ISSUER, AUDIENCE)
    assert verifier.verify(TokenIssuer(key, ISSUER, AUDIENCE).issue("s-1", ["PATIENT"])).sub == "s-1"
    with pytest.raises(InvalidTokenError, match="not accepted"):
        verifier.verify(_token({"alg": "RS512", "kid": key.kid}, _claims(), key))


def test_leeway_tolerates_small_clock_skew_only():
    key = new_key()
    verifier = TokenVerifier(KeySet([key]), ISSUER, AUDIENCE, leeway_seconds=30)
    now = int(time.time())
    assert verifier.verify(_token({"alg": "ES256"}, _claims(exp=now - 10), key)).sub == "s-1"
    with pytest.raises(InvalidTokenError):
        verifier.verify(_token({"alg": "ES256"}, _claims(exp=now - 60), key))
    assert verifier.verify(_token({"alg": "ES256"}, _claims(nbf=now + 10), key)).sub == "s-1"
    with pytest.raises(InvalidTokenError):
        verifier.verify(_token({"alg": "ES256"}, _claims(nbf=now + 60), key))


def test_roles_can_come_from_a_nested_claim_as_keycloak_sends_them():
    key = new_key()
    token = _token({"alg": "ES256", "typ": "JWT"}, _claims(realm_access={"roles": ["DOCTOR"]},
                                                            scope="notes:read", azp="web"), key)
    principal = TokenVerifier(KeySet([key]), ISSUER, AUDIENCE, roles_claim="realm_access.roles").verify(token)
    assert (principal.roles, principal.scope, principal.client_id) == ({"DOCTOR"}, {"notes:read"}, "web")


def test_a_token_for_the_api_among_several_audiences_is_accepted():
    key = new_key()
    token = _token({"alg": "ES256"}, _claims(aud=["account", AUDIENCE]), key)
    assert TokenVerifier(KeySet([key]), ISSUER, AUDIENCE).verify(token).sub == "s-1"


def test_a_header_that_is_not_json_is_an_invalid_token():
    garbage = base64.urlsafe_b64encode(b"{not json").decode().rstrip("=") + "." + base64.urlsafe_b64encode(
        json.dumps(_claims()).encode()).decode().rstrip("=") + ".sig"
    with pytest.raises(InvalidTokenError):
        TokenVerifier(KeySet([new_key()]), ISSUER, AUDIENCE).verify(garbage)
