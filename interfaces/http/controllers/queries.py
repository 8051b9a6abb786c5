"""Lists served from the read models: a patient's consultations, a doctor's agenda."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from application.clinic import Clinic
from application.read_models import ReadModels
from domain.values import Role
from infrastructure.security.tokens import Principal
from interfaces.http import access
from interfaces.http.controllers.consultations import (
    FRESHNESS_HEADERS,
    Cursor,
    MinPosition,
    PageLimit,
    consultation_body,
    freshness_headers,
    read_after,
)
from interfaces.http.schemas import Agenda, ConsultationPage

Day = Annotated[date, QueryParameter(description="the day, YYYY-MM-DD (UTC)")]
"""A day in a query (agendas, slot lists)."""


class PatientConsultationsController(Controller):
    path = "/v1/patients"
    tags = ["consultations"]

    @get("/{patient_id:uuid}/consultations", operation_id="listPatientConsultations",
         summary="List a patient's consultations", sync_to_thread=True, response_headers=FRESHNESS_HEADERS)
    def list(self, patient_id: FromPath[UUID], clinic: NamedDependency[Clinic], request: Request[Principal, Any, Any],
             status: Annotated[str | None, QueryParameter(
                 required=False, pattern="^(REQUESTED|CONFIRMED|REJECTED|CANCELLED|COMPLETED|NO_SHOW)$",
                 description="Only the consultations in this status")] = None,
             start_from: Annotated[datetime | None, QueryParameter(
                 name="from", required=False, description="Only those starting at or after this moment")] = None,
             start_to: Annotated[datetime | None, QueryParameter(
                 name="to", required=False, description="Only those starting before this moment")] = None,
             cursor: Cursor = None,
             limit: PageLimit = 20,
             min_position: MinPosition = None) -> Response[ConsultationPage]:
        """The patient's consultations, newest first (by start); the patient themself or an admin."""
        access.allow(access.may_book_for(request.user, str(patient_id)), "only the patient or an admin")
        stale = read_after(clinic, min_position)
        page = clinic.require(ReadModels).patient_consultations(patient_id, status, start_from, start_to, cursor, limit)
        body = ConsultationPage([consultation_body(v) for v in page.items], page.next_cursor)
        return Response(body, headers={**freshness_headers(clinic, "patient_consultations", "consultation_detail"),
                                       **stale})


class AgendaController(Controller):
    path = "/v1/doctors"
    tags = ["consultations"]

    @get("/{doctor_id:uuid}/agenda", operation_id="getDoctorAgenda",
         summary="Read a doctor's agenda for a day", sync_to_thread=True, response_headers=FRESHNESS_HEADERS)
    def agenda(self, doctor_id: FromPath[UUID], date: Day, clinic: NamedDependency[Clinic],
               request: Request[Principal, Any, Any], min_position: MinPosition = None) -> Response[Agenda]:
        """The doctor's consultations that day in time order; the doctor themself or an admin."""
        access.allow(access.is_self_or_admin(request.user, str(doctor_id), Role.DOCTOR), "only the doctor or an admin")
        stale = read_after(clinic, min_position)
        views = clinic.require(ReadModels).agenda(doctor_id, date)
        body = Agenda(doctor_id, date, [consultation_body(v) for v in views])
        return Response(body, headers={**freshness_headers(clinic, "doctor_agenda", "consultation_detail"), **stale})
