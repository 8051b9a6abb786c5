"""Consumer side: the booking saga's real ``HttpRegistryClient`` against the Pact mock server.

The client is the production class, built as the booking service builds it except for the URL:
the mock server speaks plain HTTP on localhost, and httpx uses the client's TLS context only for
``https://`` URLs (mutual TLS itself is tested in ``tests/integration/test_registry_mtls.py``).
Its token is a real JWT from a ``DevServiceTokens`` with the ``registry:eligibility`` scope.
"""

from __future__ import annotations

import ssl
from uuid import UUID

import httpx
import pytest
from joserfc.jwk import ECKey

from domain.values import RejectionReason
from infrastructure.registry_client import ELIGIBILITY_PATH, HttpRegistryClient, RegistryProtocolError
from infrastructure.security.scopes import Scope
from infrastructure.security.service_tokens import DevServiceTokens
from infrastructure.security.tokens import TokenIssuer
from process_managers.ports import Eligibility, RegistryUnavailableError
from tests.contract import pacts
from tests.contract import registry_contract as contract
from tests.contract.pacts import assert_matches_committed

EXPECTED = {
    contract.CASES[0].description: Eligibility.ok(),
    contract.CASES[1].description: Eligibility.refused(RejectionReason.PATIENT_NOT_ELIGIBLE),
    contract.CASES[2].description: Eligibility.refused(RejectionReason.PATIENT_NOT_ELIGIBLE),
    contract.CASES[3].description: Eligibility.refused(RejectionReason.DOCTOR_INACTIVE),
    contract.CASES[4].description: Eligibility.refused(RejectionReason.DOCTOR_NOT_FOUND),
}


def booking_client(base_url: str, tokens: DevServiceTokens) -> HttpRegistryClient:
    return HttpRegistryClient(str(base_url), ssl.create_default_context(), tokens=tokens,
                              sleep=lambda seconds: None)  # no backoff waits in a contract test


@pytest.fixture
def tokens() -> DevServiceTokens:
    issuer = TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), "clinic-dev", "clinic-api")
    return DevServiceTokens(issuer, "booking", Scope.REGISTRY_ELIGIBILITY)


@pytest.mark.parametrize("case", contract.CASES[:5], ids=lambda case: case.description)
def test_the_saga_reads_each_eligibility_answer(case, tokens):
    # given the registry answers as the contract says
    pact = contract.build([case])
    with pact.serve() as server, booking_client(server.url, tokens) as client:
        # when the saga asks about the case's patient and doctor
        answer = client.booking_eligibility(UUID(case.patient_id), UUID(case.doctor_id))
    # then it reads the answer it will act on (the mock server also checked the request)
    assert answer == EXPECTED[case.description]


def test_a_refused_service_token_is_retried_once_then_reported(tokens):
    # given the registry refuses the booking service's token
    pact = contract.build([contract.CASES[5]])
    case = contract.CASES[5]
    with pact.serve() as server, booking_client(server.url, tokens) as client:
        # when the saga asks
        with pytest.raises(RegistryProtocolError) as refused:
            client.booking_eligibility(UUID(case.patient_id), UUID(case.doctor_id))
    # then a fresh token was tried too, and the saga gets "unavailable" (it retries until its deadline)
    assert refused.value.status == 401 and isinstance(refused.value, RegistryUnavailableError)
    assert tokens.fetches == 2


def test_a_call_without_the_service_token_breaks_the_contract():
    # the mock server is strict: a client that dropped the token would fail its consumer test
    case = contract.CASES[0]
    server = contract.build([case]).serve(raises=False, verbose=False)
    with server:
        answer = httpx.get(f"{server.url}{ELIGIBILITY_PATH}",
                           params={"patient_id": case.patient_id, "doctor_id": case.doctor_id})
    assert answer.status_code == 500  # the mock server's "no interaction matched"
    [request] = server.mismatches
    assert [m.key for m in request.mismatches] == ["Authorization"]  # type: ignore[attr-defined]


def test_the_committed_pact_is_what_the_consumer_expects(tmp_path):
    assert_matches_committed(contract.build(), tmp_path)


def test_a_changed_contract_shows_as_a_diff_against_the_committed_pact(tmp_path, monkeypatch):
    monkeypatch.setattr(pacts, "UPDATE", False)  # never write this partial pact over the committed one
    with pytest.raises(AssertionError, match="the consumer's contract changed") as changed:
        assert_matches_committed(contract.build(contract.CASES[:-1]), tmp_path)
    assert "-      \"description\": \"an eligibility check with a service token" in str(changed.value)
