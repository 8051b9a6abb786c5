"""The API with the services' caching verifier: a repeated token is answered from memory, a bad one never."""

from __future__ import annotations

import uuid

from joserfc.jwk import ECKey
from litestar.testing import TestClient

from infrastructure.security.token_cache import CachingTokenVerifier
from infrastructure.security.tokens import TokenIssuer, public_keys


def test_given_the_caching_verifier_when_a_token_comes_twice_then_both_are_authenticated_and_a_forged_one_is_not(
        clinic, issuer):
    from interfaces.http.app import create_app

    verifier = CachingTokenVerifier(public_keys([issuer.key]), issuer.issuer, issuer.audience)
    good = {"Authorization": f"Bearer {issuer.issue('ops-1', ['ADMIN'])}"}
    forger = TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), issuer.issuer, issuer.audience)
    forged = {"Authorization": f"Bearer {forger.issue('ops-1', ['ADMIN'])}"}
    path = f"/v1/sagas/{uuid.uuid4()}"

    with TestClient(create_app(clinic, verifier)) as api:
        first, second = api.get(path, headers=good), api.get(path, headers=good)
        refused = [api.get(path, headers=forged) for _ in range(2)]

    assert first.status_code == second.status_code == 404  # authenticated, authorized, nothing there
    assert verifier.cached(good["Authorization"].removeprefix("Bearer ")) is not None
    assert [r.status_code for r in refused] == [401, 401]
