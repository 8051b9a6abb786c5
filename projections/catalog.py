"""Every projection the clinic maintains, by name."""

from __future__ import annotations

from projections.base import Projection
from projections.consultation_detail import ConsultationDetail
from projections.doctor_agenda import DoctorAgenda
from projections.doctor_directory import DoctorDirectory
from projections.doctor_slots import DoctorSlots
from projections.patient_consultations import PatientConsultations
from projections.saga_list import SagaList
from projections.saga_status import SagaStatus
from projections.webhook_deliveries import WebhookDeliveries

ALL_PROJECTIONS: tuple[Projection, ...] = (
    ConsultationDetail(),
    PatientConsultations(),
    DoctorAgenda(),
    DoctorSlots(),
    SagaStatus(),
    SagaList(),
    DoctorDirectory(),
    WebhookDeliveries(),
)

BY_NAME: dict[str, Projection] = {projection.name: projection for projection in ALL_PROJECTIONS}
