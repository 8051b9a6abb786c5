"""Webhooks: a client's subscription to consultation outcomes, and each delivery of one outcome to it.

A subscription names a URL and the outcomes it wants (``EVENT_TYPES``), and whose consultations it
hears of: its owner's own (a patient's or a doctor's) or, for the clinic's staff, every consultation.
The ``WebhookDirectory`` lists every live subscription, so the context finds those an outcome
concerns in one read. Each outcome becomes one ``WebhookDelivery`` per subscription it concerns, in
the same transaction as the context's position in the consultations' log (the outbox): recorded
once, then attempted until the client answers 2xx or ``DeliverySchedule`` gives up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from domain.base import ClinicAggregate, DomainError

WEBHOOK_NAMESPACE = uuid5(NAMESPACE_URL, "urn:clinic:webhooks")
DIRECTORY_ID = uuid5(WEBHOOK_NAMESPACE, "directory")
"""The one directory of subscriptions."""

OUTCOMES: dict[str, str] = {
    "Confirmed": "consultation.confirmed",
    "Rejected": "consultation.rejected",
    "CancelledByPatient": "consultation.cancelled",
    "CancelledByClinic": "consultation.cancelled",
    "Rescheduled": "consultation.rescheduled",
    "RescheduleFailed": "consultation.reschedule_failed",
    "Completed": "consultation.completed",
    "MarkedNoShow": "consultation.no_show",
}
"""The webhook event type of each consultation event a client may subscribe to, by the event's class name."""
EVENT_TYPES: tuple[str, ...] = tuple(dict.fromkeys(OUTCOMES.values()))
"""Every webhook event type, in the order the API documents them."""
MAX_SUBSCRIPTIONS_PER_OWNER = 10
MAX_URL_LENGTH = 2048


class WebhookError(DomainError):
    """A subscription request the rules refuse (its URL or events)."""


class TooManySubscriptionsError(DomainError):
    """The owner already has ``MAX_SUBSCRIPTIONS_PER_OWNER`` subscriptions."""


def delivery_id_for(subscription_id: UUID, source_event_id: str) -> UUID:
    """The one delivery of an outcome (``source_event_id``: its consultation and version) to one subscription."""
    return uuid5(WEBHOOK_NAMESPACE, f"{subscription_id}/{source_event_id}")


def parties_id_for(consultation_id: UUID) -> UUID:
    """The record of who a consultation concerns, in this context's store."""
    return uuid5(WEBHOOK_NAMESPACE, f"parties/{consultation_id}")


def checked_url(url: str, allow_http: bool) -> str:
    """``url`` if a subscription may name it: absolute https (http only where ``allow_http``), a host, no
    credentials or fragment, at most ``MAX_URL_LENGTH`` characters."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookError(f"url: at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as error:
        raise WebhookError(f"url: {error}") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise WebhookError(f"url: the scheme must be {' or '.join(schemes)}")
    if not parts.hostname:
        raise WebhookError("url: it must name a host")
    if parts.username is not None or parts.password is not None:
        raise WebhookError("url: credentials in the URL are not allowed (the signature authenticates us)")
    if parts.fragment:
        raise WebhookError("url: a fragment is not allowed")
    return url


def checked_events(events: list[str]) -> list[str]:
    """The event types asked for, each known and named once, in the documented order."""
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise WebhookError(f"events: unknown event types {unknown}; known: {list(EVENT_TYPES)}")
    if not events:
        raise WebhookError("events: name at least one event type")
    return [kind for kind in EVENT_TYPES if kind in events]


@dataclass(frozen=True)
class Listing:
    """A live subscription as the directory knows it: whose it is, whose consultations, which events."""

    owner: str
    patient_id: UUID | None
    doctor_id: UUID | None
    events: tuple[str, ...]

    def concerns(self, patient_id: UUID | None, doctor_id: UUID | None, event_type: str) -> bool:
        """It wants ``event_type`` of a consultation of this patient and doctor (unknown: staff's only)."""
        if event_type not in self.events:
            return False
        if self.patient_id is not None:
            return self.patient_id == patient_id
        if self.doctor_id is not None:
            return self.doctor_id == doctor_id
        return True


class WebhookSubscription(ClinicAggregate):
    """A client's URL and the outcomes it wants there; its signing secret is derived, never stored."""

    class Subscribed(ClinicAggregate.Created):
        owner: str
        url: str
        events: list[str]
        patient_id: UUID | None
        doctor_id: UUID | None

    class Deleted(ClinicAggregate.Event):
        pass

    @event(Subscribed)
    def __init__(self, owner: str, url: str, events: list[str], patient_id: UUID | None,
                 doctor_id: UUID | None) -> None:
        self.owner = owner
        self.url = url
        self.events = events
        self.patient_id = patient_id
        self.doctor_id = doctor_id
        self.deleted = False

    def delete(self) -> None:
        """Stop deliveries (those still to be attempted are abandoned); deleting again is a no-op."""
        if not self.deleted:
            self._deleted()

    @event(Deleted)
    def _deleted(self) -> None:
        self.deleted = True

    @property
    def listing(self) -> Listing:
        return Listing(self.owner, self.patient_id, self.doctor_id, tuple(self.events))


class WebhookDirectory(ClinicAggregate):
    """Every live subscription, so an outcome finds the subscriptions it concerns in one read."""

    class Opened(ClinicAggregate.Created):
        pass

    class Listed(ClinicAggregate.Event):
        subscription_id: UUID
        owner: str
        patient_id: UUID | None
        doctor_id: UUID | None
        events: list[str]

        def apply(self, aggregate: Any) -> None:
            aggregate.listings[self.subscription_id] = Listing(
                self.owner, self.patient_id, self.doctor_id, tuple(self.events))

    class Unlisted(ClinicAggregate.Event):
        subscription_id: UUID

        def apply(self, aggregate: Any) -> None:
            aggregate.listings.pop(self.subscription_id, None)

    @staticmethod
    def create_id() -> UUID:
        return DIRECTORY_ID

    @event(Opened)
    def __init__(self) -> None:
        self.listings: dict[UUID, Listing] = {}

    def add(self, subscription: WebhookSubscription) -> None:
        """Add ``subscription``; an owner has at most ``MAX_SUBSCRIPTIONS_PER_OWNER``."""
        if len(self.owned_by(subscription.owner)) >= MAX_SUBSCRIPTIONS_PER_OWNER:
            raise TooManySubscriptionsError(
                f"at most {MAX_SUBSCRIPTIONS_PER_OWNER} webhook subscriptions per client; delete one first")
        listing = subscription.listing
        self.trigger_event(self.Listed, subscription_id=subscription.id, owner=listing.owner,
                           patient_id=listing.patient_id, doctor_id=listing.doctor_id, events=list(listing.events))

    def remove(self, subscription_id: UUID) -> None:
        if subscription_id in self.listings:
            self.trigger_event(self.Unlisted, subscription_id=subscription_id)

    def owned_by(self, owner: str) -> list[UUID]:
        """The owner's subscriptions, oldest first."""
        return [subscription_id for subscription_id, listing in self.listings.items() if listing.owner == owner]

    def wants_parties(self, event_type: str) -> bool:
        """Some subscription to one's own consultations wants ``event_type``: its patient and doctor matter."""
        return any(event_type in listing.events and (listing.patient_id or listing.doctor_id)
                   for listing in self.listings.values())

    def concerned(self, patient_id: UUID | None, doctor_id: UUID | None, event_type: str) -> list[UUID]:
        """The subscriptions that want ``event_type`` of a consultation of this patient and doctor."""
        return [subscription_id for subscription_id, listing in self.listings.items()
                if listing.concerns(patient_id, doctor_id, event_type)]


class ConsultationParties(ClinicAggregate):
    """Whom a consultation concerns, learnt from its request: later outcomes do not name them."""

    class Noted(ClinicAggregate.Created):
        consultation_id: UUID
        patient_id: UUID
        doctor_id: UUID

    @staticmethod
    def create_id(consultation_id: UUID, patient_id: UUID, doctor_id: UUID) -> UUID:
        return parties_id_for(consultation_id)

    @event(Noted)
    def __init__(self, consultation_id: UUID, patient_id: UUID, doctor_id: UUID) -> None:
        self.consultation_id = consultation_id
        self.patient_id = patient_id
        self.doctor_id = doctor_id


@dataclass(frozen=True)
class DeliverySchedule:
    """When a failed delivery is tried again: ``first_delay``, doubling up to ``max_delay``, and given up
    after ``max_attempts`` attempts."""

    first_delay: timedelta = timedelta(seconds=10)
    max_delay: timedelta = timedelta(hours=2)
    max_attempts: int = 12

    def __post_init__(self) -> None:
        if self.first_delay <= timedelta(0) or self.max_delay < self.first_delay or self.max_attempts < 1:
            raise ValueError("a delivery schedule needs 0 < first_delay <= max_delay and max_attempts >= 1")

    def retry_after(self, attempts: int) -> timedelta | None:
        """How long after the ``attempts``-th failed attempt the next one is made (``None``: give up)."""
        if attempts >= self.max_attempts:
            return None
        exponent = min(attempts - 1, 40)  # 2**40 first delays exceed any max_delay
        delay: timedelta = min(self.first_delay * 2 ** exponent, self.max_delay)
        return delay


@dataclass(frozen=True)
class SendResult:
    """What a client answered an attempt: its HTTP status, or why there was no answer (``error``)."""

    status_code: int | None
    error: str | None = None


class DeliveryStatus:
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    """Given up: every attempt failed, or the subscription was deleted."""


class WebhookDelivery(ClinicAggregate):
    """One outcome (``body``, the JSON sent and signed at every attempt) for one subscription, caused by
    ``source_event_id`` (the consultation's event, as ``<id>/<version>``), and every attempt to deliver it."""

    class Queued(ClinicAggregate.Created):
        subscription_id: UUID
        event_type: str
        consultation_id: UUID
        body: str
        source_event_id: str

    class Attempted(ClinicAggregate.Event):
        """An attempt: the HTTP status the client answered (``None``: no answer, see ``error``), and when
        the next attempt is due (``None``: no other, it was delivered or given up)."""

        attempt: int
        status_code: int | None
        error: str | None
        next_attempt_at: datetime | None

        def apply(self, aggregate: Any) -> None:
            aggregate.attempts = self.attempt
            aggregate.last_status_code = self.status_code
            aggregate.last_error = self.error
            aggregate.next_attempt_at = self.next_attempt_at
            if self.status_code is not None and 200 <= self.status_code < 300:
                aggregate.status = DeliveryStatus.DELIVERED
            elif self.next_attempt_at is None:
                aggregate.status = DeliveryStatus.FAILED

    class Abandoned(ClinicAggregate.Event):
        """Not attempted again: ``reason`` (the subscription was deleted)."""

        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = DeliveryStatus.FAILED
            aggregate.next_attempt_at = None
            aggregate.last_error = self.reason

    @staticmethod
    def create_id(subscription_id: UUID, event_type: str, consultation_id: UUID, body: str,
                  source_event_id: str) -> UUID:
        return delivery_id_for(subscription_id, source_event_id)

    @event(Queued)
    def __init__(self, subscription_id: UUID, event_type: str, consultation_id: UUID, body: str,
                 source_event_id: str) -> None:
        self.subscription_id = subscription_id
        self.event_type = event_type
        self.consultation_id = consultation_id
        self.body = body
        self.source_event_id = source_event_id
        self.status = DeliveryStatus.PENDING
        self.attempts = 0
        self.last_status_code: int | None = None
        self.last_error: str | None = None
        self.next_attempt_at: datetime | None = None

    def record_attempt(self, status_code: int | None, error: str | None, now: datetime,
                       schedule: DeliverySchedule) -> None:
        """Record an attempt made at ``now``: delivered on a 2xx, else due again by ``schedule`` or given up."""
        if self.status != DeliveryStatus.PENDING:
            return
        attempt = self.attempts + 1
        delivered = status_code is not None and 200 <= status_code < 300
        delay = None if delivered else schedule.retry_after(attempt)
        self.trigger_event(self.Attempted, attempt=attempt, status_code=status_code, error=error,
                           next_attempt_at=None if delay is None else now + delay)

    def abandon(self, reason: str) -> None:
        if self.status == DeliveryStatus.PENDING:
            self.trigger_event(self.Abandoned, reason=reason)
