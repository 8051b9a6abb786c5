"""``webhook-delivery:<id>`` (one outcome sent to one subscription: its event, status and last attempt) and
``webhook-deliveries:<subscription id>`` (a subscription's deliveries, scored by when each was created), the
delivery log a client reads to learn what reached it and what did not."""

from __future__ import annotations

from typing import Any

from domain.webhooks import DeliveryStatus, WebhookDelivery
from projections.ops import AddToIndex, Op, SetFields
from projections.values import epoch


def delivery_key(delivery_id: object) -> str:
    """The hash of one delivery."""
    return f"webhook-delivery:{delivery_id}"


def deliveries_key(subscription_id: object) -> str:
    """The sorted set of a subscription's deliveries, by creation."""
    return f"webhook-deliveries:{subscription_id}"


class WebhookDeliveries:
    """delivery_id, subscription_id, event_type, consultation_id, created_at, status, attempts and the last
    attempt's status code, error and time, and when the next is due."""

    name = "webhook_deliveries"
    version = 1
    leaders = ("Notifications",)

    def changes(self, event: Any) -> list[Op]:
        kind, key = type(event), delivery_key(event.originator_id)
        if kind is WebhookDelivery.Queued:
            member = str(event.originator_id)
            return [SetFields(key, {"delivery_id": member, "subscription_id": str(event.subscription_id),
                                    "event_type": event.event_type, "consultation_id": str(event.consultation_id),
                                    "created_at": event.timestamp.isoformat(), "status": DeliveryStatus.PENDING,
                                    "attempts": "0"}),
                    AddToIndex(deliveries_key(event.subscription_id), member, epoch(event.timestamp))]
        if kind is WebhookDelivery.Attempted:
            delivered = event.status_code is not None and 200 <= event.status_code < 300
            status = DeliveryStatus.DELIVERED if delivered else \
                DeliveryStatus.PENDING if event.next_attempt_at is not None else DeliveryStatus.FAILED
            return [SetFields(key, {
                "status": status, "attempts": str(event.attempt), "last_attempt_at": event.timestamp.isoformat(),
                "last_status_code": "" if event.status_code is None else str(event.status_code),
                "last_error": event.error or "",
                "next_attempt_at": "" if event.next_attempt_at is None else event.next_attempt_at.isoformat()})]
        if kind is WebhookDelivery.Abandoned:
            return [SetFields(key, {"status": DeliveryStatus.FAILED, "last_error": event.reason,
                                    "next_attempt_at": ""})]
        return []
