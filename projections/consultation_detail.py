"""``consultation:<id>``: one hash per consultation, the fields ``ConsultationView`` shows.

It also follows the registry for erasures (``Patient.PersonalDataErased``): each patient's
consultation ids are indexed (``patient:<id>:consultation_ids``), the erasure is kept as
the fields it overwrites (``patient:<id>:erasure``), and copied onto each consultation of
the patient, including ones applied after it (another leader's log may be behind).
"""

from __future__ import annotations

from typing import Any

from domain.consultation import LIFECYCLE, Consultation, ConsultationStatus
from domain.patient import Patient
from domain.personal_data import ERASED
from projections.ops import AddToIndex, CopyToMembers, Op, SetFields
from projections.values import epoch, iso

STATUS_AFTER: dict[type, str] = {getattr(Consultation, name): transition.target.value
                                  for name, transition in LIFECYCLE.items() if transition.target is not None}
"""The status each event leaves a consultation in, from the aggregate's own table."""
VERSION_ONLY: frozenset[type] = frozenset(getattr(Consultation, name) for name, transition in LIFECYCLE.items()
                                          if transition.target is None)
"""Events that change the consultation but not its status: the view records their version."""


def consultation_key(consultation_id: object) -> str:
    """The hash of one consultation."""
    return f"consultation:{consultation_id}"


def patient_consultation_ids_key(patient_id: object) -> str:
    """The sorted set of a patient's consultation ids, by start: whose views an erasure redacts."""
    return f"patient:{patient_id}:consultation_ids"


def patient_erasure_key(patient_id: object) -> str:
    """The fields an erasure of this patient overwrites in each of their consultations (absent: none)."""
    return f"patient:{patient_id}:erasure"


REDACTED = {"reason": ERASED}
"""The personal fields of this view, as an erasure leaves them."""


class ConsultationDetail:
    """consultation_id, patient_id, doctor_id, start, status, reason, rejection_reason, version, and while a
    reschedule is under way or after one failed: rescheduling_to, reschedule_failure ("" when none)."""

    name = "consultation_detail"
    version = 2  # v2: follows erasures
    leaders = ("Consultations", "Registry")

    def changes(self, event: Any) -> list[Op]:
        """Requested writes every field; later events the status and/or the version (a reschedule the
        start too); an erasure the reason."""
        kind = type(event)
        if kind is Consultation.Requested:
            return [SetFields(consultation_key(event.originator_id), _requested_fields(event)),
                    AddToIndex(patient_consultation_ids_key(event.patient_id), str(event.originator_id),
                               epoch(event.start)),
                    _redact(event.patient_id)]
        if kind is Patient.PersonalDataErased:
            return [SetFields(patient_erasure_key(event.originator_id), REDACTED), _redact(event.originator_id)]
        if kind not in STATUS_AFTER and kind not in VERSION_ONLY:
            return []
        fields = {"version": str(event.originator_version)}
        if kind in STATUS_AFTER:
            fields["status"] = STATUS_AFTER[kind]
        if kind is Consultation.Rejected:
            fields["rejection_reason"] = event.reason
        if kind is Consultation.RescheduleRequested:
            fields |= {"rescheduling_to": iso(event.start), "reschedule_failure": ""}
        if kind is Consultation.RescheduleFailed:
            fields |= {"rescheduling_to": "", "reschedule_failure": event.reason}
        if kind is Consultation.Rescheduled:
            fields |= {"start": iso(event.start), "rescheduling_to": ""}
            return [SetFields(consultation_key(event.originator_id), fields),
                    AddToIndex(patient_consultation_ids_key(event.patient_id), str(event.originator_id),
                               epoch(event.start))]
        return [SetFields(consultation_key(event.originator_id), fields)]


def _requested_fields(event: Any) -> dict[str, str]:
    return {
        "consultation_id": str(event.originator_id),
        "patient_id": str(event.patient_id),
        "doctor_id": str(event.doctor_id),
        "start": iso(event.start),
        "status": ConsultationStatus.REQUESTED.value,
        "reason": event.reason,
        "rejection_reason": "",
        "version": str(event.originator_version),
    }


def _redact(patient_id: object) -> CopyToMembers:
    """Copy the patient's erasure (if any) onto each of their consultations."""
    return CopyToMembers(patient_consultation_ids_key(patient_id), "consultation:", patient_erasure_key(patient_id))
