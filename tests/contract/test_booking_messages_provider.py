"""Provider side: the messages consultations and scheduling really publish, verified against the
booking saga's committed message pacts.

No message is written by hand here. An embedded clinic (``bootstrap``, in-memory stores, the saga
runner in process) runs the story that makes each event: bookings confirmed and refused, a
cancellation by the patient and one by the clinic, all through the application layer. Each message
is then the producer's own output: the notification from the context's log, encoded by
``infrastructure.messaging.codec.encode`` (what ``OutboxRelay`` publishes): the body byte for byte,
the AMQP headers as the metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.utils import get_topic
from pact import Verifier
from pact.types import Message

from application.bootstrap import bootstrap
from application.settings import Settings
from domain.consultation import Consultation
from domain.slot import Slot, SlotRequestRefused
from infrastructure.messaging.codec import encode
from tests.contract import message_contract as contract
from tests.contract.pacts import assert_every_interaction_verified, failed_interactions, pact_file

NINE = datetime(2027, 1, 5, 9, tzinfo=UTC)
EVENTS = {case.description: topic for case, topic in zip(contract.CASES, [
    Consultation.Requested, Consultation.CancelledByPatient, Consultation.CancelledByClinic,
    Slot.Held, Slot.Booked, SlotRequestRefused.Recorded], strict=True)}
"""The event class whose published message each interaction describes."""


class Producers:
    """The contexts that publish what the saga consumes, after a story that made every such event."""

    def __init__(self, settings: Settings) -> None:
        self.clinic = clinic = bootstrap(settings)
        patient = clinic.registry.register_patient("Ana", "ana@example.org", date(1990, 1, 1), consent=True)
        doctor = clinic.registry.register_doctor("Dr Rui", "gp")
        clinic.open_slots(doctor, [(NINE, 30), (NINE + timedelta(hours=1), 30)])
        by_patient = clinic.book(patient, doctor, NINE, "check-up").consultation_id
        by_clinic = clinic.book(patient, doctor, NINE + timedelta(hours=1), "follow-up").consultation_id
        clinic.book(patient, doctor, NINE + timedelta(hours=2), "no slot then")  # refused by scheduling
        clinic.wait_until_settled()
        clinic.consultations.cancel(by_patient, "I am unwell", by_patient=True)
        clinic.consultations.cancel(by_clinic, "the doctor is away", by_patient=False)
        clinic.wait_until_settled()
        self.apps = {"Consultations": clinic.consultations, "Scheduling": clinic.scheduling}

    def message(self, event_class: type, rename: tuple[bytes, bytes] | None = None) -> Message:
        """The first published message of ``event_class``, exactly as the relay would publish it."""
        app = self.apps["Scheduling" if event_class.__module__ == "domain.slot" else "Consultations"]
        topic = get_topic(event_class)
        notification = next(n for n in app.recorder.select_notifications(start=1, limit=1_000) if n.topic == topic)
        outgoing = encode(app.name, app.mapper, notification)
        body = outgoing.body if rename is None else outgoing.body.replace(*rename)
        return Message(contents=body, metadata=dict(outgoing.properties.headers or {}),
                       content_type=outgoing.properties.content_type)

    def handlers(self, provider: str, rename: tuple[bytes, bytes] | None = None) -> dict[str, Callable[[], Any]]:
        return {case.description: (lambda event=EVENTS[case.description]: self.message(event, rename))
                for case in contract.cases_of(provider)}


@pytest.fixture(scope="module")
def producers(tmp_path_factory) -> Iterator[Producers]:
    settings = Settings(persistence="memory", data_dir=tmp_path_factory.mktemp("producers"),
                        runner_tick_seconds=0.05)
    producers = Producers(settings)
    yield producers
    producers.clinic.close()


def verifier_for(provider: str, handlers: dict[str, Callable[[], Any]]) -> Verifier:
    return (Verifier(provider)
            .message_handler(handlers)
            .add_source(pact_file(contract.CONSUMER, provider)))


@pytest.mark.parametrize("provider", [contract.CONSULTATIONS, contract.SCHEDULING])
def test_the_published_messages_honour_the_sagas_contract(provider, producers):
    verifier = verifier_for(provider, producers.handlers(provider))
    verifier.verify()
    assert_every_interaction_verified(verifier, contract.CONSUMER, provider)


def test_a_producer_that_renames_a_field_fails_verification(producers):
    # given scheduling publishing "booking_ref" where the saga reads "booking_id" (same length)
    handlers = producers.handlers(contract.SCHEDULING, rename=(b'"booking_id"', b'"booking_rf"'))
    # then every scheduling message the saga consumes fails (each carries the booking id)
    failures = failed_interactions(verifier_for(contract.SCHEDULING, handlers))
    assert set(failures) == {case.description for case in contract.cases_of(contract.SCHEDULING)}, failures
