"""Client secrets and passwords: Argon2id hashes, salted, verified without revealing which part failed."""

from __future__ import annotations

import pytest

from interfaces.auth.hashing import check_password, hash_secret, new_client_secret, verify_secret


def test_a_hash_is_argon2id_salted_and_never_the_secret():
    first, second = hash_secret("correct horse"), hash_secret("correct horse")
    assert first.startswith("$argon2id$") and "correct horse" not in first
    assert first != second  # a fresh salt each time


def test_only_the_right_secret_verifies():
    hashed = hash_secret("correct horse")
    assert verify_secret(hashed, "correct horse") is True
    assert verify_secret(hashed, "correct horsE") is False
    assert verify_secret(hashed, "") is False


def test_no_account_or_a_broken_hash_fails_instead_of_raising():
    assert verify_secret(None, "anything") is False
    assert verify_secret("not-a-hash", "anything") is False


def test_client_secrets_are_long_and_fresh():
    secrets = {new_client_secret() for _ in range(20)}
    assert len(secrets) == 20 and all(len(s) >= 43 for s in secrets)


def test_a_password_shorter_than_eight_characters_is_refused():
    with pytest.raises(ValueError, match="at least 8"):
        check_password("short")
    assert check_password("long enough") == "long enough"
