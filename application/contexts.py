"""The clinic's bounded contexts, each declared once.

A context is the unit the product is built from: one eventsourcing application with its own store
and log, the aggregates it records, the contexts it follows, the kinds an auditor may replay and the
read models its part of the API answers from. In embedded mode one process hosts them all; in
distributed mode each is a service of its own (``service`` names it: its API, its worker, its
queues). Everything that used to list contexts is derived from ``CONTEXTS``: the system graph, the
subscriptions (queue bindings), the record tables, the auditor's kinds, the service list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from eventsourcing.system import System

from application.consultations import ConsultationsApplication
from application.notifications import NotificationsApplication
from application.registry import RegistryApplication
from application.scheduling import SchedulingApplication
from domain.consultation import Consultation
from domain.doctor import Doctor
from domain.patient import Patient
from domain.record_access import PatientRecordAccess
from domain.slot import Slot, SlotRequestRefused
from domain.webhooks import ConsultationParties, WebhookDelivery, WebhookDirectory, WebhookSubscription
from process_managers.booking import BookingProcessManager
from process_managers.booking_saga import BookingSaga
from process_managers.reschedule_saga import RescheduleSaga


@dataclass(frozen=True)
class BoundedContext:
    """One context: what it records, whom it follows, what auditors and readers ask of it."""

    service: str
    """Its name as a service (distributed mode), in the API's composition and in settings."""
    application: type[Any]
    """Its eventsourcing application; ``application.name`` names its store and log."""
    records: tuple[type, ...]
    """The aggregates whose events it records."""
    follows: tuple[str, ...] = ()
    """The services whose events it processes (its policy says which events)."""
    audited: Mapping[str, type] = field(default_factory=lambda: MappingProxyType({}))
    """The kinds an auditor may replay (``GET /v1/audit/{kind}/{id}``), each an aggregate it records."""
    read_models: tuple[str, ...] = ()
    """The projections its part of the API answers from (kept in Redis by the projection worker)."""
    erases: bool = False
    """It erases a subject's personal data (destroys their data key): its database role may."""

    @property
    def name(self) -> str:
        """Its application's name: the store, the log and the leader of the system graph."""
        return str(self.application.name)


REGISTRY = BoundedContext(
    "registry", RegistryApplication, (Patient, Doctor, PatientRecordAccess),
    audited=MappingProxyType({"patient": Patient, "doctor": Doctor}), erases=True, read_models=("doctor_directory",),
)
SCHEDULING = BoundedContext(
    "scheduling", SchedulingApplication, (Slot, SlotRequestRefused), follows=("booking",),
    audited=MappingProxyType({"slot": Slot}), read_models=("doctor_slots",),
)
CONSULTATIONS = BoundedContext(
    "consultations", ConsultationsApplication, (Consultation,), follows=("booking",),
    audited=MappingProxyType({"consultation": Consultation}),
    read_models=("consultation_detail", "patient_consultations", "doctor_agenda"),
)
BOOKING = BoundedContext(
    "booking", BookingProcessManager, (BookingSaga, RescheduleSaga), follows=("consultations", "scheduling"),
    audited=MappingProxyType({"saga": BookingSaga, "reschedule": RescheduleSaga}),
    read_models=("saga_status", "saga_list"),
)

NOTIFICATIONS = BoundedContext(
    "notifications", NotificationsApplication,
    (WebhookSubscription, WebhookDirectory, WebhookDelivery, ConsultationParties), follows=("consultations",),
    audited=MappingProxyType({"webhook": WebhookSubscription, "webhook-delivery": WebhookDelivery}),
    read_models=("webhook_deliveries",),
)

CONTEXTS: tuple[BoundedContext, ...] = (REGISTRY, SCHEDULING, CONSULTATIONS, BOOKING, NOTIFICATIONS)
BY_SERVICE: Mapping[str, BoundedContext] = MappingProxyType({context.service: context for context in CONTEXTS})
SERVICE_NAMES: tuple[str, ...] = tuple(BY_SERVICE)


def system_of(contexts: Iterable[BoundedContext]) -> System:
    """Who follows whom: one pipe per (leader, follower) pair the contexts declare."""
    contexts = tuple(contexts)
    by_service = {context.service: context for context in contexts}
    return System(pipes=[[by_service[leader].application, context.application]
                         for context in contexts for leader in context.follows])


def records_of(contexts: Iterable[BoundedContext]) -> dict[str, tuple[type, ...]]:
    """The aggregates each context records, by application name."""
    return {context.name: context.records for context in contexts}


def audited_kinds(contexts: Iterable[BoundedContext]) -> dict[str, tuple[str, type]]:
    """Each kind an auditor may ask for: the application that records it and its aggregate."""
    return {kind: (context.name, aggregate) for context in contexts for kind, aggregate in context.audited.items()}
