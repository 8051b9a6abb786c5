"""The signing key ring: rotation, pruning and pre-publication, on a clock the test sets."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta

import pytest
from joserfc.jwk import KeySet

from infrastructure.security.tokens import TokenIssuer, TokenVerifier
from interfaces.auth.keyring import CURRENT, NEXT, RETIRED, KeyRing, KeyRingFile, KeyRingMissingError, SigningKey

T0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
KEEP = timedelta(seconds=330)  # token lifetime 300 s + leeway 30 s


def states(ring: KeyRing) -> dict[str, str]:
    return {key.kid: key.state for key in ring.keys}


def published_kids(ring: KeyRing) -> set[str]:
    return {key["kid"] for key in ring.published()["keys"]}


def sign(ring: KeyRing) -> str:
    return TokenIssuer(ring.current().private_key(), "https://auth.test", "clinic-api").issue("svc", [], scope=[])


def verify_with(ring: KeyRing, token: str) -> str:
    return TokenVerifier(KeySet.import_key_set(ring.published()), "https://auth.test", "clinic-api").verify(token).sub


def test_a_new_ring_has_a_current_key_and_publishes_the_next_one_already():
    ring = KeyRing.create(T0)
    assert sorted(states(ring).values()) == [CURRENT, NEXT]
    assert published_kids(ring) == set(states(ring))
    assert all(key["alg"] == "ES256" and key["use"] == "sig" and "d" not in key for key in ring.published()["keys"])


def test_given_a_ring_when_rotated_then_next_signs_current_retires_and_a_new_next_is_published():
    ring = KeyRing.create(T0)
    old_current, old_next = ring.current().kid, next(k.kid for k in ring.keys if k.state == NEXT)

    rotated = ring.rotated(T0 + timedelta(days=1), KEEP)

    assert rotated.current().kid == old_next
    assert states(rotated)[old_current] == RETIRED
    new_next = [kid for kid, state in states(rotated).items() if state == NEXT]
    assert len(new_next) == 1 and new_next[0] not in (old_current, old_next)
    assert published_kids(rotated) == {old_current, old_next, new_next[0]}
    assert next(k for k in rotated.keys if k.kid == old_current).retired_at == T0 + timedelta(days=1)


def test_the_key_that_signs_after_a_rotation_was_in_the_jwks_before_it():
    ring = KeyRing.create(T0)
    cached_before = ring.published()  # what a resource server fetched before the rotation

    rotated = ring.rotated(T0 + timedelta(hours=1), KEEP)

    token = sign(rotated)
    assert TokenVerifier(KeySet.import_key_set(cached_before), "https://auth.test", "clinic-api").verify(token)


def test_a_token_signed_before_a_rotation_verifies_after_it():
    ring = KeyRing.create(T0)
    token = sign(ring)

    rotated = ring.rotated(T0 + timedelta(seconds=10), KEEP).rotated(T0 + timedelta(seconds=20), KEEP)

    assert verify_with(rotated, token) == "svc"


def test_a_retired_key_is_published_until_its_last_token_expired_then_pruned():
    ring = KeyRing.create(T0)
    retired = ring.current().kid
    rotated = ring.rotated(T0, KEEP)

    assert retired in published_kids(rotated.pruned(T0 + KEEP - timedelta(seconds=1), KEEP))
    assert retired not in published_kids(rotated.pruned(T0 + KEEP, KEEP))


def test_rotating_prunes_the_retired_keys_that_expired():
    first = KeyRing.create(T0)
    oldest = first.current().kid
    second = first.rotated(T0, KEEP)
    middle = second.current().kid

    third = second.rotated(T0 + KEEP + timedelta(seconds=1), KEEP)

    assert oldest not in states(third)
    assert states(third)[middle] == RETIRED


def test_a_ring_with_two_current_keys_or_without_a_next_key_to_promote_is_refused():
    key = SigningKey.generate(T0, CURRENT)
    with pytest.raises(ValueError, match="one current key"):
        KeyRing((key, SigningKey.generate(T0, CURRENT)))
    with pytest.raises(ValueError, match="no next key"):
        KeyRing((key,)).rotated(T0, KEEP)


def test_the_ring_survives_its_json_form():
    ring = KeyRing.create(T0).rotated(T0 + timedelta(minutes=1), KEEP)
    again = KeyRing.from_json(ring.to_json())
    assert again == ring


def test_the_key_file_is_created_once_owner_only_and_a_rotation_is_seen_by_a_reader_without_reopening(tmp_path):
    writer, reader = KeyRingFile(tmp_path), KeyRingFile(tmp_path)
    assert writer.init(T0) is True
    assert stat.S_IMODE(writer.path.stat().st_mode) == 0o600
    before = reader.ring()
    assert writer.init(T0) is False and reader.ring() == before

    writer.rotate(T0 + timedelta(hours=1), KEEP)

    assert reader.ring().current().kid != before.current().kid
    assert stat.S_IMODE(writer.path.stat().st_mode) == 0o600


def test_a_missing_key_file_says_how_to_create_it(tmp_path):
    with pytest.raises(KeyRingMissingError, match="clinic keys init"):
        KeyRingFile(tmp_path).ring()


def test_an_emergency_rotation_keeping_nothing_unpublishes_the_leaked_key_at_once():
    ring = KeyRing.create(T0)
    leaked = ring.current().kid

    rotated = ring.rotated(T0, timedelta(0))

    assert leaked not in published_kids(rotated)
    assert sorted(states(rotated).values()) == [CURRENT, NEXT]
