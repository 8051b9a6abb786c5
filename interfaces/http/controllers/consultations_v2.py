"""API v2 of reading a consultation: the successor of the deprecated ``GET /v1/consultations/{id}``.

Same read model, same access rule, same freshness headers as v1; only the representation
differs (docs/deprecation.md#getconsultation-v1-to-v2 says why and how to migrate).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from application.clinic import Clinic
from application.views import ConsultationView
from infrastructure.security.tokens import Principal
from interfaces.http.controllers.consultations import (
    ETAG_HEADER,
    FRESHNESS_HEADERS,
    PREFERENCE_APPLIED_HEADER,
    MinPosition,
    PreferWait,
    read_consultation,
)
from interfaces.http.schemas import ConsultationState, ConsultationV2, RescheduleState


class ConsultationV2Controller(Controller):
    path = "/v2/consultations"
    tags = ["consultations"]

    @get("/{consultation_id:uuid}", operation_id="getConsultationV2", summary="Read a consultation (v2)",
         response_headers=[ETAG_HEADER, *FRESHNESS_HEADERS, PREFERENCE_APPLIED_HEADER])
    async def read(self, consultation_id: FromPath[UUID], clinic: NamedDependency[Clinic],
                   request: Request[Principal, Any, Any], min_position: MinPosition = None,
                   prefer: PreferWait = None) -> Response[ConsultationV2]:
        """A consultation, its status and the status's reason, from the read model; visible to its patient,
        its doctor and admins. The body's ``version`` is the ``ETag`` that ``If-Match`` takes. With
        ``Prefer: wait=N`` a booking not yet decided is answered once the saga decides (or after N s)."""
        view, headers = await read_consultation(clinic, consultation_id, request.user, min_position, prefer)
        return Response(consultation_v2(view), headers=headers)


def consultation_v2(view: ConsultationView) -> ConsultationV2:
    """The v2 representation of a consultation's view."""
    reason = view.rejection_reason if view.status == "REJECTED" and view.rejection_reason else None
    return ConsultationV2(view.consultation_id, view.version, view.patient_id, view.doctor_id, view.start,
                          view.reason, ConsultationState(view.status, reason),  # type: ignore[arg-type]
                          _reschedule(view))


def _reschedule(view: ConsultationView) -> RescheduleState | None:
    if view.rescheduling_to is not None:
        return RescheduleState("pending", start=view.rescheduling_to)
    if view.reschedule_failure is not None:
        return RescheduleState("failed", reason=view.reschedule_failure)
    return None
