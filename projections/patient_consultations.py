"""``patient:<patient_id>:consultations``: a patient's consultations by start (newest first = reverse).

Only membership is kept here; the status shown or filtered on is read from ``consultation:<id>``.
"""

from __future__ import annotations

from typing import Any

from domain.consultation import Consultation
from projections.ops import AddToIndex, Op
from projections.values import epoch


def patient_consultations_key(patient_id: object) -> str:
    """The sorted set of one patient's consultation ids, scored by start (epoch seconds)."""
    return f"patient:{patient_id}:consultations"


class PatientConsultations:
    """Indexes every requested consultation under its patient."""

    name = "patient_consultations"
    version = 1
    leaders = ("Consultations",)

    def changes(self, event: Any) -> list[Op]:
        """A request adds the consultation; a reschedule moves it to its new start."""
        if type(event) not in (Consultation.Requested, Consultation.Rescheduled):
            return []
        return [AddToIndex(patient_consultations_key(event.patient_id), str(event.originator_id), epoch(event.start))]
