"""specs/asyncapi.yaml says what the relays really publish: every event type, field and header."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest
import yaml

from application.consultations import ConsultationsApplication
from domain.base import ClinicAggregate
from domain.consultation import Consultation
from domain.doctor import Doctor
from domain.patient import Patient
from domain.record_access import PatientRecordAccess
from domain.slot import Slot, SlotRequestRefused
from domain.webhooks import ConsultationParties, WebhookDelivery, WebhookDirectory, WebhookSubscription
from infrastructure.messaging.codec import encode
from process_managers.booking_saga import BookingSaga
from process_managers.reschedule_saga import RescheduleSaga

SPEC = yaml.safe_load((Path(__file__).resolve().parents[3] / "specs" / "asyncapi.yaml").read_text())
IN_HEADERS = {"originator_id", "originator_version"}
FAMILIES = {
    "RegistryEventName": [Patient, Doctor, PatientRecordAccess],
    "ConsultationEventName": [Consultation],
    "SchedulingEventName": [Slot, SlotRequestRefused],
    "BookingEventName": [BookingSaga, RescheduleSaga],
    "NotificationsEventName": [WebhookSubscription, WebhookDirectory, WebhookDelivery, ConsultationParties],
}


def event_classes(aggregate: type) -> list[type]:
    """The events an aggregate records (not the ``Event``/``Created`` bases the library adds to each)."""
    return [c for c in vars(aggregate).values() if isinstance(c, type) and issubclass(c, ClinicAggregate.Event)
            and c.__name__ not in ("Event", "Created")]


def schema_properties(schema: dict) -> set[str]:
    """Every property a schema allows, following ``$ref`` and ``allOf``."""
    if "$ref" in schema:
        return schema_properties(SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
    properties = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        properties |= schema_properties(part)
    return properties


@pytest.mark.parametrize(("parameter", "aggregates"), FAMILIES.items())
def test_every_event_type_is_named_in_its_channel(parameter, aggregates):
    names = {c.__qualname__ for aggregate in aggregates for c in event_classes(aggregate)}
    assert set(SPEC["components"]["parameters"][parameter]["schema"]["enum"]) == names


@pytest.mark.parametrize("event_class", [c for family in FAMILIES.values() for a in family for c in event_classes(a)],
                         ids=lambda c: c.__qualname__)
def test_every_event_schema_has_exactly_the_events_fields(event_class):
    fields = {f.name for f in dataclasses.fields(event_class)} - IN_HEADERS
    if getattr(event_class, "class_version", 1) > 1:
        fields.add("class_version")  # the library stores it beside the fields of an upcastable event
    assert schema_properties(SPEC["components"]["schemas"][event_class.__qualname__]) == fields


def test_the_headers_are_the_ones_the_relay_sets():
    app = ConsultationsApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.request_consultation(uuid4(), uuid4(), datetime(2027, 1, 5, 9, tzinfo=UTC), "checkup")
    message = encode(app.name, app.mapper, app.recorder.select_notifications(0, 1)[0])
    assert set(SPEC["components"]["schemas"]["EventHeaders"]["properties"]) == set(message.properties.headers)
