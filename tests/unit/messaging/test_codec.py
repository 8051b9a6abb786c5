"""A notification as an AMQP message and back, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from aiormq.abc import Basic
from eventsourcing.persistence import Tracking

from application.consultations import ConsultationsApplication
from domain.consultation import Consultation
from domain.metadata import event_metadata
from infrastructure.messaging.codec import PoisonMessageError, decode, encode
from process_managers.booking import BookingProcessManager

POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
START = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)
TRACEPARENT = "00-5b1c0e2a6f1d4c3b8a7e9f0d1c2b3a49-8f3e2d1c0b9a8776-01"


@pytest.fixture
def consultations():
    app = ConsultationsApplication(env=POPO)
    with event_metadata(correlation_id="corr-1", causation_id="req-1", actor="patient:p", traceparent=TRACEPARENT):
        app.request_consultation(uuid4(), uuid4(), START, "checkup")
    yield app
    app.close()


def first_notification(app):
    return app.recorder.select_notifications(0, 1)[0]


def test_given_a_notification_when_encoded_then_the_message_names_it_and_carries_its_state(consultations):
    notification = first_notification(consultations)
    message = encode("Consultations", consultations.mapper, notification)
    p = message.properties
    assert message.routing_key == "consultations.Consultation.Requested"
    assert message.body == notification.state
    assert (p.message_id, p.delivery_mode, p.content_type, p.app_id) == \
        ("Consultations:1", 2, "application/json", "Consultations")
    assert p.message_type == notification.topic
    assert p.correlation_id == "corr-1"
    assert p.headers == {
        "application": "Consultations", "notification_id": 1, "topic": notification.topic,
        "originator_id": str(notification.originator_id), "originator_version": 1,
        "correlation_id": "corr-1", "causation_id": "req-1", "saga_id": None,
        "traceparent": TRACEPARENT,  # the trace the event was recorded in (the relay's span replaces it)
        "x-ordering-key": str(notification.originator_id),  # no saga yet: the aggregate orders it
    }


def test_an_event_recorded_outside_any_trace_is_encoded_without_a_traceparent():
    app = ConsultationsApplication(env=POPO)
    app.request_consultation(uuid4(), uuid4(), START, "checkup")
    assert encode("Consultations", app.mapper, first_notification(app)).properties.headers["traceparent"] is None


def test_a_follower_decodes_a_leaders_message_with_its_own_mapper(consultations):
    notification = first_notification(consultations)
    message = encode("Consultations", consultations.mapper, notification)
    booking = BookingProcessManager(env=POPO)

    event, tracking = decode(booking.mapper, message.body, message.properties)

    assert isinstance(event, Consultation.Requested)
    assert event.originator_id == notification.originator_id
    assert (event.reason, event.correlation_id) == ("checkup", "corr-1")
    assert tracking == Tracking("Consultations", 1)


@pytest.mark.parametrize(("body", "change", "reason"), [
    (b"not json", {}, "MapperDeserialisationError"),
    (b"{}", {}, "Consultation.Requested lacks fields: timestamp, originator_topic, patient_id"),
    (None, {"topic": "domain.nowhere:Gone"}, "TopicError"),
    (None, {"notification_id": "x"}, "ValueError"),
    (None, {"application": None}, "missing headers: application"),
])
def test_an_undecodable_message_is_poison(consultations, body, change, reason):
    message = encode("Consultations", consultations.mapper, first_notification(consultations))
    properties = Basic.Properties(headers={**message.properties.headers, **change})
    with pytest.raises(PoisonMessageError, match=reason):
        decode(consultations.mapper, message.body if body is None else body, properties)


def test_a_message_without_headers_is_poison(consultations):
    with pytest.raises(PoisonMessageError, match="missing headers"):
        decode(consultations.mapper, b"{}", Basic.Properties())
