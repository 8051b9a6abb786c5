"""The verified-token cache: a token verified once is answered from memory, within its bounds only."""

from __future__ import annotations

import time

import pytest
from joserfc.jwk import ECKey, KeySet

from infrastructure.security.token_cache import CachingTokenVerifier
from infrastructure.security.tokens import InvalidTokenError, TokenIssuer, public_keys
from tests.clocks import SecondsClock

ISSUER = TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), "clinic-test", "clinic-api")


class CountingKeys:
    """The issuer's public keys, counting how often a verifier looks them up (once per full check)."""

    def __init__(self) -> None:
        self.keys = public_keys([ISSUER.key])
        self.lookups = 0

    def keys_for(self, kid: str | None) -> KeySet:
        self.lookups += 1
        return self.keys


def verifier(**options: object) -> tuple[CachingTokenVerifier, CountingKeys, SecondsClock]:
    keys, clock = CountingKeys(), SecondsClock(time.time())
    return CachingTokenVerifier(keys, "clinic-test", "clinic-api", clock=clock, **options), keys, clock


def test_given_a_verified_token_when_it_comes_again_then_its_signature_is_not_checked_again():
    cache, keys, _ = verifier()
    token = ISSUER.issue("patient-1", ["PATIENT"])

    first, second = cache.verify(token), cache.verify(token)

    assert first == second and second.sub == "patient-1"
    assert keys.lookups == 1
    assert cache.cached(token) == first


def test_a_cached_token_is_checked_in_full_again_once_it_expires():
    cache, keys, clock = verifier()
    token = ISSUER.issue("patient-1", ["PATIENT"], ttl_seconds=30)
    cache.verify(token)

    clock.now += 30

    assert cache.cached(token) is None
    cache.verify(token)  # still within the verifier's leeway in real time: checked again, not from memory
    assert keys.lookups == 2


def test_a_cached_token_is_checked_in_full_again_after_the_maximum_age():
    cache, keys, clock = verifier(max_age_seconds=5)
    token = ISSUER.issue("patient-1", ["PATIENT"], ttl_seconds=3600)
    cache.verify(token)

    clock.now += 5

    assert cache.cached(token) is None
    cache.verify(token)
    assert keys.lookups == 2


def test_the_cache_keeps_at_most_max_entries_dropping_the_least_recently_used():
    cache, keys, _ = verifier(max_entries=2)
    a, b, c = (ISSUER.issue(sub, ["PATIENT"]) for sub in ("a", "b", "c"))
    cache.verify(a)
    cache.verify(b)
    cache.verify(a)  # a is now the most recently used

    cache.verify(c)

    assert cache.cached(b) is None and cache.cached(a) is not None and cache.cached(c) is not None
    assert keys.lookups == 3


def test_a_refused_token_is_never_cached():
    cache, keys, _ = verifier()
    other = TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), "clinic-test", "clinic-api")
    forged = other.issue("patient-1", ["ADMIN"])

    for _ in range(2):
        with pytest.raises(InvalidTokenError):
            cache.verify(forged)

    assert cache.cached(forged) is None
    assert keys.lookups == 2
