"""The messages the booking saga consumes over RabbitMQ, as two message pacts.

``booking`` follows ``consultations`` (``Consultation.Requested``, ``.CancelledByPatient``,
``.CancelledByClinic``) and ``scheduling`` (``Slot.Held``, ``Slot.Booked``,
``SlotRequestRefused.Recorded``): the policies of ``process_managers/booking.py``. A message is
what ``infrastructure/messaging/codec.encode`` publishes: the body is the stored event's state (the
event store's JSON transcoding: ``{"_type_": "uuid_hex", "_data_": ...}`` and so on), the metadata
the AMQP headers plus the content type.

Each body lists only the fields the saga's decoder cannot do without (the event class's fields
without a default); ``test_booking_messages_consumer`` checks that dropping any of them makes the
message poison, so the contract asks for nothing the saga does not use.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pact import Pact, match

from infrastructure.personal_data.mapper import _aad as sealing_aad
from process_managers.booking_saga import saga_id_for
from tests.contract.pacts import DATETIME, UUID_HEX, new_pact
from tests.contract.pacts import UUID as UUID_RE

CONSUMER = "booking"
CONSULTATIONS, SCHEDULING = "consultations", "scheduling"

CONSULTATION = UUID("3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a21")
"""The example consultation; the saga that books it has id ``saga_id_for(CONSULTATION)``."""
SAGA = saga_id_for(CONSULTATION)
PATIENT = UUID("0b6c1f1e-3f6a-4e55-9c3e-0d3a1c2b4a21")
DOCTOR = UUID("6a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c21")
SLOT = UUID("5e4d3c2b-1a09-5f8e-8d7c-6b5a4f3e2d21")
START = "2027-01-05T09:00:00+00:00"
RECORDED_AT = "2027-01-04T08:00:00.123456+00:00"


def typed(kind: str, data: object) -> dict[str, object]:
    """A value in the event store's JSON transcoding: the kind exactly, the data by its matcher."""
    return {"_type_": kind, "_data_": data}


def uuid_hex(example: UUID) -> dict[str, object]:
    return typed("uuid_hex", match.regex(example.hex, regex=UUID_HEX))


def datetime_iso(example: str) -> dict[str, object]:
    return typed("datetime_iso", match.regex(example, regex=DATETIME))


PATIENT_DATA_KEY = bytes(range(32))
"""The example patient's data key (test only). Every service of a deployment shares one key store
(docs/gdpr.md); the consumer test puts this key in the saga's store, so the examples open."""


def sealed(text: str, nonce: int) -> dict[str, object]:
    """Personal data (a free-text reason) sealed with the patient's key, as the sealing mapper does:
    AES-GCM bound to the event's originator and field. A fixed nonce keeps the example stable."""
    nonce_bytes = nonce.to_bytes(12, "big")
    ciphertext = AESGCM(PATIENT_DATA_KEY).encrypt(nonce_bytes, json.dumps(text).encode(),
                                                  sealing_aad(CONSULTATION, "reason"))
    return typed("sealed_v1", {"s": match.regex(str(PATIENT), regex=UUID_RE),
                               "n": match.like(base64.b64encode(nonce_bytes).decode()),
                               "c": match.like(base64.b64encode(ciphertext).decode())})


@dataclass(frozen=True)
class MessageCase:
    provider: str
    description: str
    application: str
    topic: str
    originator_id: UUID
    body: dict[str, object]

    def add_to(self, pact: Pact) -> None:
        (pact.upon_receiving(self.description, "Async")
         .with_body(self.body, content_type="application/json")
         .with_metadata({
             "application": self.application,
             "topic": self.topic,
             "originator_id": match.regex(str(self.originator_id), regex=UUID_RE),
             "originator_version": match.int(1),
             "notification_id": match.int(1),
         }))


CASES = [
    MessageCase(CONSULTATIONS, "Consultation.Requested: a patient asked for a consultation", "Consultations",
                "domain.consultation:Consultation.Requested", CONSULTATION, {
                    "timestamp": datetime_iso(RECORDED_AT), "originator_topic": "domain.consultation:Consultation",
                    "patient_id": uuid_hex(PATIENT), "doctor_id": uuid_hex(DOCTOR), "start": datetime_iso(START),
                    "reason": sealed("check-up", 1)}),
    MessageCase(CONSULTATIONS, "Consultation.CancelledByPatient: the patient cancelled a confirmed consultation",
                "Consultations", "domain.consultation:Consultation.CancelledByPatient", CONSULTATION, {
                    "timestamp": datetime_iso(RECORDED_AT), "reason": sealed("I am unwell", 2)}),
    MessageCase(CONSULTATIONS, "Consultation.CancelledByClinic: the clinic cancelled a confirmed consultation",
                "Consultations", "domain.consultation:Consultation.CancelledByClinic", CONSULTATION, {
                    "timestamp": datetime_iso(RECORDED_AT), "reason": sealed("the doctor is away", 3)}),
    MessageCase(SCHEDULING, "Slot.Held: the slot is held for the booking", "Scheduling",
                "domain.slot:Slot.Held", SLOT, {
                    "timestamp": datetime_iso(RECORDED_AT), "booking_id": uuid_hex(SAGA),
                    "expires_at": datetime_iso(RECORDED_AT)}),
    MessageCase(SCHEDULING, "Slot.Booked: the held slot is booked for the booking", "Scheduling",
                "domain.slot:Slot.Booked", SLOT, {
                    "timestamp": datetime_iso(RECORDED_AT), "booking_id": uuid_hex(SAGA)}),
    MessageCase(SCHEDULING, "SlotRequestRefused.Recorded: no slot could be held for the booking", "Scheduling",
                "domain.slot:SlotRequestRefused.Recorded", UUID("8a1c0760-fc96-5564-9bde-8416f20851b9"), {
                    "timestamp": datetime_iso(RECORDED_AT), "originator_topic": "domain.slot:SlotRequestRefused",
                    "booking_id": uuid_hex(SAGA), "slot_id": uuid_hex(SLOT), "command": match.like("hold"),
                    "reason": match.like("no slot is open at this start")}),
]


def cases_of(provider: str) -> list[MessageCase]:
    return [case for case in CASES if case.provider == provider]


def build(provider: str, cases: list[MessageCase] | None = None) -> Pact:
    pact = new_pact(CONSUMER, provider)
    for case in cases if cases is not None else cases_of(provider):
        case.add_to(pact)
    return pact


