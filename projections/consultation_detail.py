"""``consultation:<id>``: one hash per consultation, the fields ``ConsultationView`` shows."""

from __future__ import annotations

from typing import Any

from domain.consultation import Consultation
from projections.ops import Op, SetFields
from projections.values import iso

STATUS_AFTER: dict[type, str] = {
    Consultation.Confirmed: "CONFIRMED",
    Consultation.Rejected: "REJECTED",
    Consultation.CancelledByPatient: "CANCELLED",
    Consultation.CancelledByClinic: "CANCELLED",
    Consultation.Completed: "COMPLETED",
    Consultation.MarkedNoShow: "NO_SHOW",
}


def consultation_key(consultation_id: object) -> str:
    """The hash of one consultation."""
    return f"consultation:{consultation_id}"


class ConsultationDetail:
    """consultation_id, patient_id, doctor_id, start, status, reason, rejection_reason, version."""

    name = "consultation_detail"
    version = 1
    leaders = ("Consultations",)

    def changes(self, event: Any) -> list[Op]:
        """Requested writes every field; later events the status and/or the version."""
        kind = type(event)
        if kind is Consultation.Requested:
            return [SetFields(consultation_key(event.originator_id), _requested_fields(event))]
        if kind not in STATUS_AFTER and kind is not Consultation.NoteAdded:
            return []
        fields = {"version": str(event.originator_version)}
        if kind in STATUS_AFTER:
            fields["status"] = STATUS_AFTER[kind]
        if kind is Consultation.Rejected:
            fields["rejection_reason"] = event.reason
        return [SetFields(consultation_key(event.originator_id), fields)]


def _requested_fields(event: Any) -> dict[str, str]:
    return {
        "consultation_id": str(event.originator_id),
        "patient_id": str(event.patient_id),
        "doctor_id": str(event.doctor_id),
        "start": iso(event.start),
        "status": "REQUESTED",
        "reason": event.reason,
        "rejection_reason": "",
        "version": str(event.originator_version),
    }
