"""Consumer side: every message of the booking saga's pacts, through the saga's real message path.

Each message is turned into AMQP properties as RabbitMQ delivers them, then handled exactly as
``FollowerConsumer`` handles a delivery: ``codec.decode`` with the booking application's own mapper,
then the delivery engine (tracking, exactly-once effect, the saga's policy). Each test gives the
saga the state the message finds it in, and checks what the saga did.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiormq.abc import Basic

from application.bootstrap import build_applications
from application.settings import Settings
from infrastructure.messaging.codec import PoisonMessageError, decode
from process_managers.booking import BookingProcessManager
from process_managers.booking_saga import BookingSaga, SagaState
from process_managers.delivery import Outcome, deliver
from tests.contract import message_contract as contract
from tests.contract.pacts import assert_matches_committed
from tests.kit import FakeRegistry


@pytest.fixture
def booking() -> Iterator[BookingProcessManager]:
    apps = build_applications(Settings(persistence="memory"))
    booking: BookingProcessManager = apps[BookingProcessManager.name]
    booking.registry = FakeRegistry()
    share_the_patients_key(booking)
    yield booking
    for app in apps.values():
        app.close()


def share_the_patients_key(booking: BookingProcessManager) -> None:
    """Given: the key store the saga shares with consultations holds the example patient's data key."""
    keys, subject = booking.mapper.keys, str(contract.PATIENT)
    keys.store.add_key(subject, keys.kek.id, keys.kek.wrap(subject, contract.PATIENT_DATA_KEY), datetime.now(UTC))


def properties(metadata: dict[str, Any]) -> Basic.Properties:
    """The AMQP properties the relay would have set, as the pact's metadata describes them."""
    headers = {name: value for name, value in metadata.items() if name != "contentType"}
    return Basic.Properties(content_type=metadata.get("contentType"), headers=headers,
                            message_type=headers.get("topic"), app_id=headers.get("application"))


def handle(booking: BookingProcessManager, body: str | bytes | None, metadata: dict[str, Any]) -> tuple[Outcome, Any]:
    """What ``FollowerConsumer`` does with one delivered message, short of the ack; and the event."""
    raw = body.encode() if isinstance(body, str) else bytes(body or b"")
    domain_event, tracking = decode(booking.mapper, raw, properties(metadata))
    return deliver(booking, domain_event, tracking), domain_event


def saga_in(booking: BookingProcessManager, *steps: Callable[[BookingSaga], None]) -> None:
    """Given: the example consultation's saga, moved through ``steps``."""
    saga = BookingSaga(consultation_id=contract.CONSULTATION, patient_id=contract.PATIENT, doctor_id=contract.DOCTOR,
                       slot_id=contract.SLOT, deadline=datetime.now(UTC) + timedelta(minutes=5))
    for step in steps:
        step(saga)
    booking.save(saga)


def held(saga: BookingSaga) -> None:
    saga.record_slot_held()


def validated(saga: BookingSaga) -> None:
    saga.record_registrants_valid()


def completed(saga: BookingSaga) -> None:
    saga.record_slot_booked()


GIVEN: dict[str, tuple[Callable[[BookingSaga], None], ...] | None] = {
    contract.CASES[0].description: None,  # no saga yet: the request starts one
    contract.CASES[1].description: (held, validated, completed),
    contract.CASES[2].description: (held, validated, completed),
    contract.CASES[3].description: (),
    contract.CASES[4].description: (held, validated),
    contract.CASES[5].description: (),
}
THEN = {
    contract.CASES[0].description: SagaState.HOLDING_SLOT,
    contract.CASES[1].description: SagaState.CANCELLED,
    contract.CASES[2].description: SagaState.CANCELLED,
    contract.CASES[3].description: SagaState.BOOKING_SLOT,  # held, then the registry said yes
    contract.CASES[4].description: SagaState.COMPLETED,
    contract.CASES[5].description: SagaState.REJECTED,
}


@pytest.mark.parametrize("case", contract.CASES, ids=lambda case: case.topic.rsplit(":", 1)[1])
def test_the_saga_acts_on_each_message_it_consumes(case, booking):
    # given the saga in the state the message finds it in
    if GIVEN[case.description] is not None:
        saga_in(booking, *GIVEN[case.description])
    outcomes: list[tuple[Outcome, Any]] = []
    # when the pact's message is delivered
    contract.build(case.provider, [case]).verify(lambda body, metadata: outcomes.append(handle(booking, body, metadata)),
                                                "Async")
    # then it was processed and moved the saga on
    saga = booking.repository.get(contract.SAGA)
    [(delivery, event)] = outcomes
    assert delivery == Outcome.PROCESSED
    assert saga.state == THEN[case.description]
    if case is contract.CASES[0]:
        assert (saga.patient_id, saga.doctor_id) == (contract.PATIENT, contract.DOCTOR)
        assert event.reason == "check-up"  # the sealed reason opened with the shared key


@pytest.mark.parametrize("case", contract.CASES, ids=lambda case: case.topic.rsplit(":", 1)[1])
def test_every_field_the_contract_asks_for_is_one_the_saga_needs(case, booking):
    messages: list[tuple[dict[str, Any], dict[str, Any]]] = []
    contract.build(case.provider, [case]).verify(
        lambda body, metadata: messages.append((json.loads(body), metadata)), "Async")
    [(body, metadata)] = messages
    for field in body:
        without = json.dumps({k: v for k, v in body.items() if k != field})
        with pytest.raises(PoisonMessageError):
            decode(booking.mapper, without.encode(), properties(metadata))


@pytest.mark.parametrize("provider", [contract.CONSULTATIONS, contract.SCHEDULING])
def test_the_committed_message_pacts_are_what_the_saga_expects(provider, tmp_path):
    assert_matches_committed(contract.build(provider), tmp_path)
