"""The notifications context: clients' webhook subscriptions, and each consultation outcome pushed to them.

It follows consultations. Its policy turns each outcome into one ``WebhookDelivery`` per subscription
it concerns, recorded with its position in the consultations' log in one transaction: the deliveries
are this context's outbox, so an outcome is never lost and never queued twice. Its timer (``tick``,
run by the worker that leads the context, or by the embedded clinic's webhook thread) sends what is
due through ``WebhookSender``, signed with the subscription's secret, and records each attempt; a
failed one is tried again on ``DeliverySchedule``. A client may receive a delivery more than once (a
crash between its answer and our record of it): the ``webhook-id`` header is the same every time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import IntegrityError, Notification
from eventsourcing.utils import get_topic

from application.common import load
from domain.consultation import Consultation
from domain.metadata import event_metadata
from domain.webhooks import (
    DIRECTORY_ID,
    OUTCOMES,
    ConsultationParties,
    DeliverySchedule,
    DeliveryStatus,
    SendResult,
    WebhookDelivery,
    WebhookDirectory,
    WebhookSubscription,
    checked_events,
    checked_url,
    parties_id_for,
)
from process_managers.base import ClinicProcessApplication

SENDS_PER_TICK = 50
"""At most this many deliveries are attempted per tick (the rest at the next, at once)."""
CONCURRENT_SENDS = 4
"""Deliveries attempted at once, so one slow client does not hold back the others."""
SECRET_PREFIX = "whsec_"


class WebhookSender(Protocol):
    """Posts ``body`` to ``url``, signed with ``secret`` as the Standard Webhooks specification says."""

    def send(self, url: str, secret: str, message_id: str, body: str) -> SendResult: ...


class WebhookObserver(Protocol):
    """Told of each attempt once it is recorded (the metrics): ``outcome`` is delivered, retrying or failed."""

    def webhook_attempted(self, outcome: str, seconds: float) -> None: ...


@dataclass(frozen=True)
class SubscriptionView:
    id: UUID
    owner: str
    url: str
    events: list[str]
    patient_id: UUID | None
    doctor_id: UUID | None
    created_at: datetime
    version: int
    deleted: bool


@dataclass
class Pending:
    """A delivery not yet delivered or given up, as the timer knows it."""

    due_at: datetime
    correlation_id: str | None


class PartiesUnknownError(RuntimeError):
    """An outcome of a consultation whose request this context has not processed."""


def secret_for(signing_key: bytes, subscription_id: UUID) -> str:
    """The subscription's signing secret, derived from the context's key (never stored): ``whsec_`` and
    32 bytes in base64, the format Standard Webhooks libraries read."""
    digest = hmac.new(signing_key, b"clinic-webhook-secret/" + subscription_id.bytes, hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(digest).decode()


def outcome_body(event: Any, event_type: str) -> str:
    """The JSON a client receives for a consultation outcome: what happened and where to read the rest
    (no personal data: a cancellation's free-text reason stays in the consultation)."""
    consultation_id = str(event.originator_id)
    data: dict[str, Any] = {"consultation_id": consultation_id, "version": event.originator_version,
                            "links": {"consultation": f"/v2/consultations/{consultation_id}"}}
    if isinstance(event, (Consultation.Rejected, Consultation.RescheduleFailed)):
        data["reason"] = event.reason
    if isinstance(event, (Consultation.CancelledByPatient, Consultation.CancelledByClinic)):
        data["cancelled_by"] = "patient" if isinstance(event, Consultation.CancelledByPatient) else "clinic"
    if isinstance(event, Consultation.Rescheduled):
        data["start"], data["from_start"] = event.start.isoformat(), event.from_start.isoformat()
    return json.dumps({"type": event_type, "timestamp": event.timestamp.isoformat(), "data": data},
                      separators=(",", ":"), sort_keys=True)


OUTCOME_CLASSES: tuple[type, ...] = tuple(getattr(Consultation, name) for name in OUTCOMES)
DELIVERY_TOPICS = [get_topic(kind) for kind in (WebhookDelivery.Queued, WebhookDelivery.Attempted,
                                                WebhookDelivery.Abandoned)]


class NotificationsApplication(ClinicProcessApplication):
    """Keeps clients' webhook subscriptions and delivers consultation outcomes to them."""

    name = "Notifications"
    sender: WebhookSender | None = None
    signing_key: bytes = b""
    schedule: DeliverySchedule = DeliverySchedule()
    allow_http: bool = False
    """Subscriptions may name plain-http URLs (development, tests): never in production."""
    observer: WebhookObserver | None = None

    def __init__(self, env: Any = None, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self._pending: dict[UUID, Pending] = {}
        self._read_upto = 0
        self._index_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # Subscriptions -------------------------------------------------------------------

    def subscribe(self, owner: str, url: str, events: list[str], *, patient_id: UUID | None = None,
                  doctor_id: UUID | None = None) -> UUID:
        """A new subscription of ``owner`` to ``events`` of their own consultations (``patient_id`` or
        ``doctor_id``) or, with neither, of every consultation. Returns its id."""
        subscription = WebhookSubscription(owner=owner, url=checked_url(url, self.allow_http),
                                           events=checked_events(events), patient_id=patient_id, doctor_id=doctor_id)
        directory = self._directory() or WebhookDirectory()
        directory.add(subscription)
        self.save(subscription, directory)  # two at once: one conflicts on the directory (409, try again)
        return subscription.id

    def unsubscribe(self, subscription_id: UUID) -> None:
        """Delete the subscription (again: nothing changes); what is still to be delivered is abandoned."""
        subscription = load(self, subscription_id, WebhookSubscription, "webhook subscription")
        if subscription.deleted:
            return
        subscription.delete()
        directory = self._directory() or WebhookDirectory()
        directory.remove(subscription_id)
        self.save(subscription, directory)

    def subscription(self, subscription_id: UUID) -> SubscriptionView:
        """The subscription, deleted or not (``NotFoundError``: there never was one)."""
        return _view(load(self, subscription_id, WebhookSubscription, "webhook subscription"))

    def subscriptions(self, owner: str) -> list[SubscriptionView]:
        """The owner's live subscriptions, oldest first."""
        directory = self._directory()
        owned = directory.owned_by(owner) if directory is not None else []
        return [self.subscription(subscription_id) for subscription_id in owned]

    def secret(self, subscription_id: UUID) -> str:
        """The secret the subscription's deliveries are signed with (shown to its owner when created)."""
        if not self.signing_key:
            raise RuntimeError("the notifications context has no signing key")
        return secret_for(self.signing_key, subscription_id)

    def _directory(self) -> WebhookDirectory | None:
        try:
            return self.repository.get(DIRECTORY_ID)
        except AggregateNotFoundError:
            return None

    # Outcomes into deliveries (the policy) ---------------------------------------------

    def aggregates_for(self, domain_event: Any) -> Iterable[UUID]:
        if isinstance(domain_event, Consultation.Requested):
            return (parties_id_for(domain_event.originator_id),)
        if type(domain_event) in OUTCOME_CLASSES:
            return (DIRECTORY_ID, parties_id_for(domain_event.originator_id))
        return ()

    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        """Other events of consultations mean nothing to a client."""

    def _on_outcome(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        self._deliveries_of(domain_event, processing_event)

    for _outcome in OUTCOME_CLASSES:  # each registered, so the queue binds exactly these topics
        policy.register(_outcome, _on_outcome)
    del _outcome

    @policy.register
    def _(self, domain_event: Consultation.Requested, processing_event: ProcessingEvent) -> None:
        processing_event.collect_events(ConsultationParties(
            consultation_id=domain_event.originator_id, patient_id=domain_event.patient_id,
            doctor_id=domain_event.doctor_id))

    def _deliveries_of(self, outcome: Any, processing_event: ProcessingEvent) -> None:
        """One delivery of ``outcome`` to each subscription it concerns. A subscription to one's own
        consultations needs the consultation's patient and doctor, learnt from its request: an outcome
        that overtook its request (the request's message is being retried) fails, to be retried after it."""
        directory = self._directory()
        if directory is None:
            return
        event_type = OUTCOMES[type(outcome).__name__]
        parties = self._parties(outcome.originator_id)
        if parties is None and directory.wants_parties(event_type):
            raise PartiesUnknownError(
                f"consultation {outcome.originator_id}: its request has not been processed here yet (retried "
                "after it); a consultation requested before this context first ran never will be")
        patient_id, doctor_id = (parties.patient_id, parties.doctor_id) if parties is not None else (None, None)
        concerned = directory.concerned(patient_id, doctor_id, event_type)
        if not concerned:
            return
        body = outcome_body(outcome, event_type)
        source = f"{outcome.originator_id}/{outcome.originator_version}"
        for subscription_id in concerned:
            processing_event.collect_events(WebhookDelivery(
                subscription_id=subscription_id, event_type=event_type, consultation_id=outcome.originator_id,
                body=body, source_event_id=source))

    def _parties(self, consultation_id: UUID) -> ConsultationParties | None:
        try:
            return self.repository.get(parties_id_for(consultation_id))
        except AggregateNotFoundError:
            return None

    # Sending (the timer) ---------------------------------------------------------------

    def tick(self) -> datetime | None:
        """Attempt every delivery that is due (at most ``SENDS_PER_TICK``); returns when the next is due
        (``None``: nothing pending)."""
        now = self.clock()
        with self._index_lock:
            self._catch_up_deliveries()
            due = sorted((p.due_at, i) for i, p in self._pending.items() if p.due_at <= now)[:SENDS_PER_TICK]
        if due:
            list(self._senders().map(self._attempt, [delivery_id for _, delivery_id in due]))
            with self._index_lock:
                self._catch_up_deliveries()
        return self.next_due()

    def next_due(self) -> datetime | None:
        with self._index_lock:
            return min((pending.due_at for pending in self._pending.values()), default=None)

    def _attempt(self, delivery_id: UUID) -> None:
        """Send one delivery and record how it went (abandoned if its subscription was deleted)."""
        with self._index_lock:
            pending = self._pending.get(delivery_id)
        correlation_id = pending.correlation_id if pending is not None else None
        with event_metadata(correlation_id=correlation_id, causation_id=f"webhook:{delivery_id}", actor=self.actor):
            delivery: WebhookDelivery = self.repository.get(delivery_id)
            if delivery.status != DeliveryStatus.PENDING:
                return
            subscription: WebhookSubscription = self.repository.get(delivery.subscription_id)
            if subscription.deleted:
                delivery.abandon("subscription_deleted")
                self._save_attempt(delivery)
                return
            started = self.clock()
            result = self._send(subscription, delivery)
            delivery.record_attempt(result.status_code, result.error, self.clock(), self.schedule)
            if self._save_attempt(delivery) and self.observer is not None:
                self.observer.webhook_attempted(delivery.status if delivery.status != DeliveryStatus.PENDING
                                                else "retrying", (self.clock() - started).total_seconds())

    def _send(self, subscription: WebhookSubscription, delivery: WebhookDelivery) -> SendResult:
        if self.sender is None:
            return SendResult(None, "no webhook sender configured")
        try:
            return self.sender.send(subscription.url, self.secret(subscription.id), str(delivery.id), delivery.body)
        except Exception as error:  # noqa: BLE001 - any failure of one client is that delivery's attempt
            return SendResult(None, f"{type(error).__name__}: {error}"[:300])

    def _save_attempt(self, delivery: WebhookDelivery) -> bool:
        """Record it; another worker that recorded this attempt first wins (``False``)."""
        try:
            self.save(delivery)
        except IntegrityError:
            return False
        return True

    def _senders(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(CONCURRENT_SENDS, thread_name_prefix="clinic-webhooks")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        super().close()

    def _catch_up_deliveries(self) -> None:
        """Keep the index of pending deliveries up with this context's log (rebuilt from it at start)."""
        for notification in self._new_delivery_notifications():
            event = self.mapper.to_domain_event(notification)
            if isinstance(event, WebhookDelivery.Queued):
                self._pending[event.originator_id] = Pending(event.timestamp, event.correlation_id)
            elif (pending := self._pending.get(event.originator_id)) is None:
                continue
            elif isinstance(event, WebhookDelivery.Attempted) and event.next_attempt_at is not None:
                pending.due_at = event.next_attempt_at
            else:
                del self._pending[event.originator_id]

    def _new_delivery_notifications(self) -> Iterator[Notification]:
        while batch := self.recorder.select_notifications(start=self._read_upto, limit=1_000,
                                                          inclusive_of_start=False, topics=DELIVERY_TOPICS):
            yield from batch
            self._read_upto = batch[-1].id
            if len(batch) < 1_000:
                return


def _view(subscription: WebhookSubscription) -> SubscriptionView:
    return SubscriptionView(subscription.id, subscription.owner, subscription.url, list(subscription.events),
                            subscription.patient_id, subscription.doctor_id, subscription.created_on,
                            subscription.version, subscription.deleted)
