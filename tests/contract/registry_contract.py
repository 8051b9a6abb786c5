"""The contract between the booking saga (consumer) and the registry's eligibility endpoint.

One place for the interactions, so the consumer test that exercises them and the test that
regenerates the whole pact build exactly the same ones. Provider states are named in the
domain's words; each returns the ids it created (``patient_id``, ``doctor_id``), which the
verifier injects into the request (``generate.provider_state``), so the provider seeds data through
its own application services instead of accepting ids chosen by the consumer.
"""

from __future__ import annotations

from dataclasses import dataclass

from pact import Pact, generate, match
from pact.match.matcher import GenericMatcher

from infrastructure.registry_client import ELIGIBILITY_PATH
from tests.contract.pacts import BEARER, UUID, new_pact

CONSUMER, PROVIDER = "booking", "registry"

PATIENT_ACTIVE = "patient P exists and has consented to booking"
PATIENT_WITHOUT_CONSENT = "patient P exists but has not consented to booking"
PATIENT_UNKNOWN = "no patient P is registered"
DOCTOR_ACTIVE = "doctor D exists and is active"
DOCTOR_INACTIVE = "doctor D exists but has been deactivated"
DOCTOR_UNKNOWN = "no doctor D is registered"
TOKEN_UNTRUSTED = "the registry no longer trusts the key that signed the booking service's token"

EXAMPLE_TOKEN = ("Bearer eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJib29raW5nIiwic2NvcGUiOiJyZWdpc3Ry"
                 "eTplbGlnaWJpbGl0eSJ9.c2lnbmF0dXJl")


@dataclass(frozen=True)
class Case:
    """One interaction: the states, the example ids the consumer sends, the answer."""

    description: str
    states: tuple[str, ...]
    patient_id: str
    doctor_id: str
    status: int
    body: object


def _answer(allowed: bool, reason: str | None) -> dict[str, object]:
    # exact values: whether the booking may go ahead, and why not, are the contract itself
    return {"allowed": allowed, "reason": reason}


UNAUTHENTICATED = {
    # only what the client reads (it logs the detail, else the title); consumer-driven: no more
    "title": match.like("Authentication required"),
    "detail": match.like("invalid bearer token: bad_signature"),
}

CASES = [
    Case("an eligibility check for a consenting patient and an active doctor", (PATIENT_ACTIVE, DOCTOR_ACTIVE),
         "0b6c1f1e-3f6a-4e55-9c3e-0d3a1c2b4a01", "6a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c01", 200, _answer(True, None)),
    Case("an eligibility check for a patient who has not consented", (PATIENT_WITHOUT_CONSENT, DOCTOR_ACTIVE),
         "0b6c1f1e-3f6a-4e55-9c3e-0d3a1c2b4a02", "6a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c02", 200,
         _answer(False, "patient_not_eligible")),
    Case("an eligibility check for an unknown patient", (PATIENT_UNKNOWN, DOCTOR_ACTIVE),
         "0b6c1f1e-3f6a-4e55-9c3e-0d3a1c2b4a03", "6a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c03", 200,
         _answer(False, "patient_not_eligible")),
    Case("an eligibility check for a deactivated doctor", (PATIENT_ACTIVE, DOCTOR_INACTIVE),
         "0b6c1f1e-3f6a-4e55-9c3e-0d3a1c2b4a04", "6a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c04", 200,
         _answer(False, "doctor_inactive")),
    Case("an eligibility check for an unknown doctor", (PATIENT_ACTIVE, DOCTOR_UNKNOWN),
         "0b6c1f1e-3f6a-4e55-9c3e-0d3a1c2b4a05", "6a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c05", 200,
         _answer(False, "doctor_not_found")),
    Case("an eligibility check with a service token the registry does not trust",
         (TOKEN_UNTRUSTED, PATIENT_ACTIVE, DOCTOR_ACTIVE),
         "0b6c1f1e-3f6a-4e55-9c3e-0d3a1c2b4a06", "6a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c06", 401, UNAUTHENTICATED),
]


def injected_uuid(example: str, name: str) -> GenericMatcher[str]:
    """A UUID the consumer sends as ``example``; the verifier sends the provider state's ``name``."""
    return GenericMatcher("regex", value=example, regex=UUID, generator=generate.provider_state(f"${{{name}}}"))


def add(pact: Pact, case: Case) -> None:
    interaction = pact.upon_receiving(case.description)
    for state in case.states:
        interaction.given(state)
    (interaction
     .with_request("GET", ELIGIBILITY_PATH)
     .with_header("Authorization", match.regex(EXAMPLE_TOKEN, regex=BEARER))
     .with_query_parameter("patient_id", injected_uuid(case.patient_id, "patient_id"))
     .with_query_parameter("doctor_id", injected_uuid(case.doctor_id, "doctor_id"))
     .will_respond_with(case.status))
    if case.status == 401:
        interaction.with_body(case.body, content_type="application/problem+json")
    else:
        interaction.with_body(case.body, content_type="application/json")


def build(cases: list[Case] = CASES) -> Pact:
    pact = new_pact(CONSUMER, PROVIDER)
    for case in cases:
        add(pact, case)
    return pact

