"""The contract between the patient portal (consumer) and the clinic's public API.

Ids, the patient's token and the consultation to read come from the provider states (created there
through the application layer); the verifier injects them into each request.
"""

from __future__ import annotations

from pact import Pact, generate, match
from pact.match.matcher import GenericMatcher

from tests.contract.pacts import BEARER, DATETIME, UUID, new_pact

CONSUMER, PROVIDER = "patient-portal", "clinic-api"

PATIENT_SIGNED_IN = "patient P has consented to booking and is signed in to the portal"
DOCTOR_WITH_SLOT = "doctor D is active and has an open slot at 2027-01-05T09:00:00Z"
CONFIRMED = "patient P's consultation C with doctor D at 2027-01-05T09:00:00Z is confirmed"
NO_CONSULTATION = "no consultation C exists"
LATER_SLOT_OPEN = "doctor D also has an open slot at 2027-01-05T10:00:00Z"
# The API answers 403, not 404, to a patient asking for a consultation that is not theirs or does not
# exist (it does not tell which, so ids cannot be probed): the portal's first draft of this pact
# expected a 404 and the provider verification caught it.

PATIENT = "0b6c1f1e-3f6a-4e55-9c3e-0d3a1c2b4a11"
DOCTOR = "6a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c11"
CONSULTATION = "3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a11"
START = "2027-01-05T09:00:00+00:00"
TOKEN = ("eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiIwYjZjMWYxZSIsInJvbGVzIjpbIlBBVElFTlQiXX0"
         ".c2lnbmF0dXJl")
CONSULTATION_PATH = rf"^/v2/consultations/{UUID[1:-1]}$"
LOCATION = rf"^/v[0-9]+/consultations/{UUID[1:-1]}$"
"""The portal keeps the booking's ``Location`` but needs only that it names the consultation."""

BOOK = "a booking request for the signed-in patient"
READ = "a read of the patient's confirmed consultation"
READ_MISSING = "a read of a consultation that does not exist, refused like one that is not the patient's"
BOOK_WITHOUT_TIMEZONE = "a booking request whose start has no timezone"
RESCHEDULE = "a request to move the patient's confirmed consultation to another open slot"
LATER = "2027-01-05T10:00:00+00:00"
RESCHEDULE_PATH = rf"^/v1/consultations/{UUID[1:-1]}/reschedule$"


def injected(example: str, expression: str, regex: str) -> GenericMatcher[str]:
    """``example`` in the consumer's test; the provider state's value (``expression``) when verified."""
    return GenericMatcher("regex", value=example, regex=regex, generator=generate.provider_state(expression))


def _authorised(interaction: object) -> None:
    interaction.with_header("Authorization", injected(f"Bearer {TOKEN}", "Bearer ${token}", BEARER))  # type: ignore[attr-defined]


def add_book(pact: Pact) -> None:
    interaction = (pact.upon_receiving(BOOK).given(PATIENT_SIGNED_IN).given(DOCTOR_WITH_SLOT)
                   .with_request("POST", "/v1/consultations"))
    _authorised(interaction)
    (interaction
     .with_body({"patient_id": injected(PATIENT, "${patient_id}", UUID),
                 "doctor_id": injected(DOCTOR, "${doctor_id}", UUID),
                 "start": match.regex(START, regex=DATETIME),
                 "reason": match.like("check-up")}, content_type="application/json")
     .will_respond_with(202)
     .with_header("Location", match.regex(f"/v1/consultations/{CONSULTATION}", regex=LOCATION))
     .with_body({"consultation_id": match.uuid(CONSULTATION, format="lowercase"),
                 "saga_id": match.uuid("9d8c7b6a-5f4e-5d3c-8b2a-1f0e9d8c7b11", format="lowercase"),
                 "status": "REQUESTED"}, content_type="application/json"))


def add_read(pact: Pact) -> None:
    interaction = (pact.upon_receiving(READ).given(CONFIRMED)
                   .with_request("GET", injected(f"/v2/consultations/{CONSULTATION}",
                                                 "/v2/consultations/${consultation_id}", CONSULTATION_PATH)))
    _authorised(interaction)
    (interaction
     .will_respond_with(200)
     .with_body({"consultation_id": injected(CONSULTATION, "${consultation_id}", UUID),
                 "version": match.int(2),
                 "patient_id": injected(PATIENT, "${patient_id}", UUID),
                 "doctor_id": match.uuid(DOCTOR, format="lowercase"),
                 "start": match.regex("2027-01-05T09:00:00Z", regex=DATETIME),
                 "reason_for_visit": match.like("check-up"),
                 "status": {"code": "CONFIRMED"}}, content_type="application/json"))


def _problem(slug: str, status: int, **extra: object) -> dict[str, object]:
    return {"type": f"urn:clinic:problem:{slug}", "title": match.like("A short summary"), "status": status,
            "detail": match.like("What went wrong"), **extra}


def add_read_missing(pact: Pact) -> None:
    interaction = (pact.upon_receiving(READ_MISSING).given(PATIENT_SIGNED_IN).given(NO_CONSULTATION)
                   .with_request("GET", injected(f"/v2/consultations/{CONSULTATION}",
                                                 "/v2/consultations/${consultation_id}", CONSULTATION_PATH)))
    _authorised(interaction)
    (interaction.will_respond_with(403)
     .with_body(_problem("forbidden", 403), content_type="application/problem+json"))


def add_book_without_timezone(pact: Pact) -> None:
    interaction = (pact.upon_receiving(BOOK_WITHOUT_TIMEZONE).given(PATIENT_SIGNED_IN).given(DOCTOR_WITH_SLOT)
                   .with_request("POST", "/v1/consultations"))
    _authorised(interaction)
    (interaction
     .with_body({"patient_id": injected(PATIENT, "${patient_id}", UUID),
                 "doctor_id": injected(DOCTOR, "${doctor_id}", UUID),
                 "start": "2027-01-05T09:00:00", "reason": "check-up"}, content_type="application/json")
     .will_respond_with(422)
     .with_body(_problem("invalid-input", 422, errors=match.each_like(
         {"field": match.regex("$.start", regex=r"^\$\.start$"),  # inside each_like, plain values match by type only
          "message": match.like("Expected `datetime` with a timezone component")})),
         content_type="application/problem+json"))


def add_reschedule(pact: Pact) -> None:
    interaction = (pact.upon_receiving(RESCHEDULE).given(CONFIRMED).given(LATER_SLOT_OPEN)
                   .with_request("POST", injected(f"/v1/consultations/{CONSULTATION}/reschedule",
                                                  "/v1/consultations/${consultation_id}/reschedule", RESCHEDULE_PATH)))
    _authorised(interaction)
    (interaction
     .with_body({"start": match.regex(LATER, regex=DATETIME)}, content_type="application/json")
     .will_respond_with(202)
     .with_header("Location", injected(f"/v2/consultations/{CONSULTATION}", "/v2/consultations/${consultation_id}",
                                       CONSULTATION_PATH))
     .with_body({"consultation_id": injected(CONSULTATION, "${consultation_id}", UUID),
                 "saga_id": match.uuid("7f3e2d1c-0b9a-5877-8c6d-5e4f3a2b1c0d", format="lowercase"),
                 "start": match.regex("2027-01-05T10:00:00Z", regex=DATETIME),
                 "status": "pending"}, content_type="application/json"))


SUBSCRIBE = "a subscription of the portal's webhook URL to the patient's booking outcomes"
HOOK_URL = "https://portal.example.org/hooks/clinic"
WEBHOOK = "5e8f2c1a-3b4d-4e6f-8a0b-2c4d6e8f0a11"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw7JP1qcBmzG0="


def add_subscribe(pact: Pact) -> None:
    interaction = pact.upon_receiving(SUBSCRIBE).given(PATIENT_SIGNED_IN).with_request("POST", "/v1/webhooks")
    _authorised(interaction)
    (interaction
     .with_body({"url": HOOK_URL, "events": ["consultation.confirmed", "consultation.rejected"]},
                content_type="application/json")
     .will_respond_with(201)
     .with_header("Location", match.regex(f"/v1/webhooks/{WEBHOOK}", regex=rf"^/v1/webhooks/{UUID[1:-1]}$"))
     .with_body({"webhook_id": match.uuid(WEBHOOK, format="lowercase"), "url": HOOK_URL,
                 "events": ["consultation.confirmed", "consultation.rejected"], "audience": "own",
                 "secret": match.regex(SECRET, regex=r"^whsec_[A-Za-z0-9+/]{43}=$")},
                content_type="application/json"))


INTERACTIONS = {SUBSCRIBE: add_subscribe, BOOK: add_book, READ: add_read, READ_MISSING: add_read_missing,
                BOOK_WITHOUT_TIMEZONE: add_book_without_timezone, RESCHEDULE: add_reschedule}


def build(*descriptions: str) -> Pact:
    pact = new_pact(CONSUMER, PROVIDER)
    for description in descriptions or INTERACTIONS:
        INTERACTIONS[description](pact)
    return pact
