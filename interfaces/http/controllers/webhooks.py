"""Webhook subscriptions: a client names a URL and the consultation outcomes it wants pushed there, and
reads the log of what was delivered. Patients and doctors hear of their own consultations; admins (the
clinic's front desk and systems) of every consultation."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from application.clinic import Clinic
from application.idempotency import created, once
from application.notifications import NotificationsApplication, SubscriptionView
from application.read_models import ReadModels
from application.views import WebhookDeliveryListing
from domain.base import NotFoundError
from domain.values import Role
from infrastructure.security.tokens import Principal
from interfaces.http import access
from interfaces.http.controllers.consultations import FRESHNESS_HEADERS, Cursor, PageLimit, freshness_headers
from interfaces.http.idempotency import IdempotencyKeyHeader, idempotency_key
from interfaces.http.schemas import (
    CreateWebhook,
    Webhook,
    WebhookCreated,
    WebhookDelivery,
    WebhookDeliveryPage,
    WebhookList,
)

SUBSCRIBERS = (Role.PATIENT, Role.DOCTOR, Role.ADMIN)


class WebhookController(Controller):
    path = "/v1/webhooks"
    tags = ["notifications"]

    @post(operation_id="createWebhook", summary="Subscribe a URL to consultation outcomes", status_code=201,
          sync_to_thread=True, guards=[access.requires_role(*SUBSCRIBERS)], response_headers=[ResponseHeader(
              name="Location", documentation_only=True, required=True, example="/v1/webhooks/{webhook_id}",
              description="The new subscription")])
    def create(self, data: JSONBody[CreateWebhook], clinic: NamedDependency[Clinic],
               request: Request[Principal, Any, Any], idempotency: IdempotencyKeyHeader = None) -> Response[WebhookCreated]:
        """Each outcome in ``events`` of the caller's consultations (a patient's or a doctor's own; an admin's:
        every consultation) is POSTed to ``url``, signed as Standard Webhooks says (``webhook-id``,
        ``webhook-timestamp``, ``webhook-signature`` with the ``secret`` returned here, and only here), and
        tried again with a growing delay until the URL answers 2xx. At most 10 subscriptions per caller."""
        notifications = clinic.require(NotificationsApplication)
        patient_id, doctor_id = _audience(request.user)
        webhook_id = once(notifications, idempotency_key(request, idempotency, data), lambda: notifications.subscribe(
            request.user.sub, data.url, list(data.events), patient_id=patient_id, doctor_id=doctor_id), created)
        view = notifications.subscription(webhook_id)
        body = WebhookCreated(**_fields(view), secret=notifications.secret(webhook_id))
        return Response(body, status_code=201, headers={"Location": f"{self.path}/{webhook_id}"})

    @get(operation_id="listWebhooks", summary="List your webhook subscriptions", sync_to_thread=True)
    def list(self, clinic: NamedDependency[Clinic], request: Request[Principal, Any, Any]) -> WebhookList:
        """The caller's subscriptions, oldest first."""
        notifications = clinic.require(NotificationsApplication)
        return WebhookList([_webhook(view) for view in notifications.subscriptions(request.user.sub)])

    @get("/{webhook_id:uuid}", operation_id="getWebhook", summary="Read a webhook subscription", sync_to_thread=True)
    def read(self, webhook_id: FromPath[UUID], clinic: NamedDependency[Clinic],
             request: Request[Principal, Any, Any]) -> Webhook:
        """One of the caller's subscriptions (an admin: anyone's)."""
        return _webhook(_owned(clinic, request.user, webhook_id, live=True))

    @delete("/{webhook_id:uuid}", operation_id="deleteWebhook", summary="Delete a webhook subscription",
            sync_to_thread=True)
    def remove(self, webhook_id: FromPath[UUID], clinic: NamedDependency[Clinic],
               request: Request[Principal, Any, Any]) -> None:
        """Stop the subscription: nothing more is sent, and deliveries not yet taken are given up. Deleting it
        again changes nothing."""
        _owned(clinic, request.user, webhook_id, live=False)
        clinic.require(NotificationsApplication).unsubscribe(webhook_id)

    @get("/{webhook_id:uuid}/deliveries", operation_id="listWebhookDeliveries",
         summary="Read a webhook subscription's delivery log", sync_to_thread=True, response_headers=FRESHNESS_HEADERS)
    def deliveries(self, webhook_id: FromPath[UUID], clinic: NamedDependency[Clinic],
                   request: Request[Principal, Any, Any],
                   status: Annotated[Literal["pending", "delivered", "failed"] | None, QueryParameter(
                       required=False, description="Only deliveries in this state")] = None,
                   cursor: Cursor = None,
                   limit: PageLimit = 20,
                   ) -> Response[WebhookDeliveryPage]:
        """What was sent to the subscription, newest first (read model): each outcome, its state, its
        attempts, the last answer and when it is tried next."""
        _owned(clinic, request.user, webhook_id, live=False)  # the log of a deleted one stays readable
        page = clinic.require(ReadModels).webhook_deliveries(webhook_id, status, cursor, limit)
        body = WebhookDeliveryPage([_delivery(item) for item in page.items], page.next_cursor)
        return Response(body, headers=freshness_headers(clinic, "webhook_deliveries"))


NOT_YOURS = "only the subscription's owner or an admin"


def _owned(clinic: Clinic, principal: Principal, webhook_id: UUID, live: bool) -> SubscriptionView:
    """The subscription, if the caller owns it or is an admin (refused alike when there is none); ``live``: a
    deleted one is not found."""
    with access.masking(principal, NOT_YOURS):
        view = clinic.require(NotificationsApplication).subscription(webhook_id)
    access.allow(view.owner == principal.sub or principal.has_role(Role.ADMIN), NOT_YOURS)
    if live and view.deleted:
        raise NotFoundError(f"webhook subscription {webhook_id} was deleted")
    return view


def _audience(principal: Principal) -> tuple[UUID | None, UUID | None]:
    """Whose consultations the caller's subscription hears of: ``(patient, doctor)``; ``(None, None)``: all."""
    if principal.has_role(Role.ADMIN):
        return None, None
    role = Role.DOCTOR if principal.has_role(Role.DOCTOR) else Role.PATIENT
    try:
        subject = UUID(principal.sub)
    except ValueError:
        access.allow(False, f"a {role.lower()}'s token must name them by their id")
        raise
    return (None, subject) if role is Role.DOCTOR else (subject, None)


def _fields(view: SubscriptionView) -> dict[str, Any]:
    audience = "all" if view.patient_id is None and view.doctor_id is None else "own"
    return {"webhook_id": view.id, "url": view.url, "events": view.events, "audience": audience,
            "created_at": view.created_at, "version": view.version}


def _webhook(view: SubscriptionView) -> Webhook:
    return Webhook(**_fields(view))


def _delivery(item: WebhookDeliveryListing) -> WebhookDelivery:
    return WebhookDelivery(item.delivery_id, item.event_type, item.consultation_id, item.created_at,
                           item.status,  # type: ignore[arg-type]
                           item.attempts, item.last_attempt_at, item.last_status_code, item.last_error,
                           item.next_attempt_at)
