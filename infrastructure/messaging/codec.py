"""A notification as an AMQP message, and a message back as a domain event with its tracking.

The body is the stored event's state, byte for byte: a follower decodes it with its
own mapper (every context uses the same transcoder), exactly as if it had read the
leader's notification log. The headers carry what a follower, an operator or a
tracer needs without decoding the body (``traceparent``: the trace the event was recorded in,
which the relay's publish span continues and replaces).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from aiormq.abc import Basic
from eventsourcing.persistence import Mapper, Notification, StoredEvent, Tracking

from infrastructure.messaging.headers import integer
from infrastructure.messaging.topology import ORDERING_KEY, routing_key

CONTENT_TYPE = "application/json"
PERSISTENT = 2
REQUIRED_HEADERS = ("application", "notification_id", "topic", "originator_id", "originator_version")


class PoisonMessageError(Exception):
    """The message cannot be decoded into a domain event: retrying will not help."""


@dataclass(frozen=True)
class OutgoingMessage:
    """What a relay publishes: routing key, body and properties."""

    routing_key: str
    body: bytes
    properties: Basic.Properties


def message_id(app_name: str, notification_id: int) -> str:
    """``Consultations:42``: the same notification always has the same message id."""
    return f"{app_name}:{notification_id}"


def encode(app_name: str, mapper: Mapper[Any], notification: Notification) -> OutgoingMessage:
    """The message for one notification of application ``app_name``.

    The headers come from the stored state as the transcoder reads it: no event object is built and
    no personal field is opened (that needs its subject's key), so relaying costs one JSON decode."""
    state = event_state(mapper, notification.state)
    correlation_id = state.get("correlation_id")
    headers = {
        "application": app_name,
        "notification_id": notification.id,
        "topic": notification.topic,
        "originator_id": str(notification.originator_id),
        "originator_version": notification.originator_version,
        "correlation_id": correlation_id,
        "causation_id": state.get("causation_id"),
        "saga_id": state.get("saga_id"),
        "traceparent": state.get("traceparent"),  # the relay's publish span replaces it
        ORDERING_KEY: str(state.get("saga_id") or notification.originator_id),  # the partition, if partitioned
    }
    properties = Basic.Properties(
        content_type=CONTENT_TYPE, delivery_mode=PERSISTENT, message_id=message_id(app_name, notification.id),
        message_type=notification.topic, app_id=app_name, correlation_id=correlation_id,
        timestamp=state.get("timestamp"), headers=headers,
    )
    return OutgoingMessage(routing_key(app_name, notification.topic), notification.state, properties)


def event_state(mapper: Mapper[Any], state: bytes) -> dict[str, Any]:
    """A stored event's state as its mapper's transcoder reads it (after the mapper's cipher and compressor)."""
    if mapper.cipher is not None:
        state = mapper.cipher.decrypt(state)
    if mapper.compressor is not None:
        state = mapper.compressor.decompress(state)
    decoded = mapper.transcoder.decode(state)
    return decoded if isinstance(decoded, dict) else {}


def decode(mapper: Mapper[Any], body: bytes, properties: Basic.Properties) -> tuple[Any, Tracking]:
    """The domain event and its tracking position; ``PoisonMessageError`` if it cannot be decoded."""
    headers = properties.headers or {}
    missing = [name for name in REQUIRED_HEADERS if headers.get(name) is None]
    if missing:
        raise PoisonMessageError(f"missing headers: {', '.join(missing)}")
    try:
        stored = StoredEvent(
            originator_id=_originator_id(headers["originator_id"]),
            originator_version=integer(headers["originator_version"]),
            topic=str(headers["topic"]),
            state=bytes(body),
        )
        tracking = Tracking(str(headers["application"]), integer(headers["notification_id"]))
        domain_event = mapper.to_domain_event(stored)
    except Exception as error:  # noqa: BLE001 - whatever the mapper raises, the message is unusable
        raise PoisonMessageError(f"{type(error).__name__}: {error}") from error
    _require_fields(domain_event)
    return domain_event, tracking


def _require_fields(domain_event: Any) -> None:
    """The mapper fills ``__dict__`` without calling ``__init__``: check no field is missing."""
    if not dataclasses.is_dataclass(domain_event):
        return
    missing = [f.name for f in dataclasses.fields(domain_event) if f.name not in vars(domain_event)
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise PoisonMessageError(f"{type(domain_event).__qualname__} lacks fields: {', '.join(missing)}")


def _originator_id(value: Any) -> UUID | str:
    try:
        return UUID(str(value))
    except ValueError:
        return str(value)

