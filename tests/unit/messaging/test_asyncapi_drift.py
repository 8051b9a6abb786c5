"""specs/asyncapi.yaml describes exactly the messages the relays publish and the followers bind.

Published: every context relays every event it records (``RECORDS``), with the routing key
``codec``/``topology`` give it. Consumed: each follower's queue binds the events its policy
handles (``SUBSCRIPTIONS``). Both sets must equal the document's, and every event, built and
encoded by its context's real mapper (personal fields sealed) and the relay's codec, must
validate against its message's payload and headers schemas, as must every example.
"""

from __future__ import annotations

import dataclasses
import json
import typing
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from application.bootstrap import CONTEXTS, RECORDS, SUBSCRIPTIONS, bootstrap
from application.settings import Settings
from application.subscriptions import event_classes
from infrastructure.messaging.codec import encode
from infrastructure.messaging.topology import binding_keys, routing_key

SPEC = yaml.safe_load((Path(__file__).resolve().parents[3] / "specs" / "asyncapi.yaml").read_text())
EVENTS = [(leader, aggregate, cls) for leader, aggregates in RECORDS.items() for aggregate in aggregates
          for cls in event_classes(aggregate) if cls.__name__ not in ("Event", "Created")]
"""(leader, aggregate, event class) for every event a context records."""


def event_channels() -> dict[str, dict[str, Any]]:
    """The channels that carry events (``<leader>.{event}``), by leader name lowercased."""
    return {name.split(".", 1)[0]: channel for name, channel in SPEC["channels"].items() if name.endswith(".{event}")}


def channel_messages(channel: dict[str, Any]) -> list[dict[str, Any]]:
    refs = channel["subscribe"]["message"]["oneOf"]
    return [SPEC["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]] for ref in refs]


def documented_routing_keys() -> set[str]:
    keys = set()
    for leader, channel in event_channels().items():
        parameter = channel["parameters"]["event"]["$ref"].rsplit("/", 1)[1]
        keys |= {f"{leader}.{name}" for name in SPEC["components"]["parameters"][parameter]["schema"]["enum"]}
    return keys


def validate(instance: Any, schema: dict[str, Any]) -> None:
    """Validate against ``schema`` with its ``$ref`` resolved inside the whole document."""
    jsonschema.Draft7Validator({**SPEC, **schema}).validate(instance)


def test_every_context_relays_and_records_what_the_document_names():
    assert set(RECORDS) == {context.name for context in CONTEXTS}
    assert set(event_channels()) == {leader.lower() for leader in RECORDS}


def test_every_routing_key_published_is_documented_and_nothing_else():
    published = {routing_key(leader, get_topic(cls)) for leader, _, cls in EVENTS}
    assert published == documented_routing_keys()


def test_every_channel_lists_one_message_per_event_with_its_topic():
    for leader, channel in event_channels().items():
        expected = {cls.__qualname__: get_topic(cls) for name, _, cls in EVENTS if name.lower() == leader}
        messages = channel_messages(channel)
        assert {m["name"]: m["headers"]["allOf"][1]["properties"]["topic"]["const"] for m in messages} == expected
        for message in messages:
            assert message["payload"] == {"$ref": f"#/components/schemas/{message['name']}"}
            assert message["bindings"]["amqp"]["messageType"] == expected[message["name"]]
            assert message["headers"]["allOf"][1]["properties"]["application"]["const"].lower() == leader


def test_each_followers_bindings_are_documented_on_its_leaders_channel():
    documented = {leader: channel["x-followers"] for leader, channel in event_channels().items()}
    bound: dict[str, dict[str, list[str]]] = {leader.lower(): {} for leader in RECORDS}
    for (leader, follower), topics in SUBSCRIPTIONS.items():
        bound[leader.lower()][follower.lower()] = sorted(topic.rpartition(":")[2] for topic in topics)
    assert documented == bound
    every_key = {key for (leader, _), topics in SUBSCRIPTIONS.items() for key in binding_keys(leader, topics)}
    assert every_key <= documented_routing_keys()


def test_every_message_has_an_example_that_validates():
    for channel in event_channels().values():
        for message in channel_messages(channel):
            assert message["examples"], message["name"]
            for example in message["examples"]:
                validate(example["payload"], message["payload"])
                validate(example["headers"], message["headers"])
    for example in SPEC["components"]["messages"]["DeadLetter"]["examples"]:
        validate(example["headers"], SPEC["components"]["messages"]["DeadLetter"]["headers"])


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[str, Any]]:
    clinic = bootstrap(Settings(persistence="memory"))
    yield {app.name: app for app in clinic.apps()}
    clinic.close()


SAMPLES = {uuid.UUID: uuid.uuid4, uuid.UUID | None: uuid.uuid4, datetime: lambda: datetime(2027, 3, 1, 9, tzinfo=UTC),
           date: lambda: date(1990, 2, 2), str: lambda: "some text", int: lambda: 30, bool: lambda: True,
           list[str]: lambda: ["consultation.confirmed"], int | None: lambda: 503,
           str | None: lambda: None,  # traceparent is one: any other text would break its pattern
           datetime | None: lambda: datetime(2027, 3, 1, 9, 10, tzinfo=UTC)}
METADATA = {"originator_id", "originator_version", "originator_topic"}


def an_event(aggregate: type, cls: type) -> Any:
    """An instance of ``cls`` with a value of its annotated type in every field."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {f.name: SAMPLES[hints[f.name]]() for f in dataclasses.fields(cls)
                              if f.name not in METADATA and hints.get(f.name) in SAMPLES}
    values |= {"originator_id": uuid.uuid5(uuid.NAMESPACE_URL, aggregate.__qualname__), "originator_version": 1}
    if "originator_topic" in {f.name for f in dataclasses.fields(cls)}:
        values["originator_topic"] = get_topic(aggregate)
    return cls(**values)


@pytest.mark.parametrize(("leader", "aggregate", "cls"), EVENTS, ids=[c.__qualname__ for _, _, c in EVENTS])
def test_every_event_as_the_relay_encodes_it_validates_against_its_message(apps, leader, aggregate, cls):
    app = apps[leader]
    opening = next(c for c in event_classes(aggregate) if c.__name__ != "Created"
                   and "originator_topic" in {f.name for f in dataclasses.fields(c)})
    app.mapper.to_stored_event(an_event(aggregate, opening))  # links the aggregate to its data subject, if any
    stored = app.mapper.to_stored_event(an_event(aggregate, cls))
    notification = Notification(id=1, originator_id=stored.originator_id, originator_version=stored.originator_version,
                                topic=stored.topic, state=stored.state)
    message = encode(app.name, app.mapper, notification)
    documented = SPEC["components"]["messages"][cls.__qualname__]
    payload = json.loads(message.body)
    validate(payload, documented["payload"])
    validate(json.loads(json.dumps(message.properties.headers)), documented["headers"])
    assert message.routing_key in documented_routing_keys()


def test_a_changed_field_fails_validation(apps):
    app = apps["Consultations"]
    from domain.consultation import Consultation

    stored = app.mapper.to_stored_event(an_event(Consultation, Consultation.Requested))
    payload = json.loads(stored.state)
    payload["reason"] = "plain text where a sealed field belongs"
    with pytest.raises(jsonschema.ValidationError):
        validate(payload, SPEC["components"]["messages"]["Consultation.Requested"]["payload"])
