"""Value types shared by the aggregates."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum


class RejectionReason(StrEnum):
    """Why a booking was refused: machine-readable, stable for API clients."""

    SLOT_UNAVAILABLE = "slot_unavailable"
    DOCTOR_INACTIVE = "doctor_inactive"
    DOCTOR_NOT_FOUND = "doctor_not_found"
    PATIENT_NOT_ELIGIBLE = "patient_not_eligible"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    VALIDATION_UNAVAILABLE = "validation_unavailable"
    COMPENSATED_BY_OPERATOR = "compensated_by_operator"
    """An operator compensated the saga before it decided (the console, ``POST /v1/sagas/{id}/compensate``)."""


class Role(StrEnum):
    """Roles an authenticated subject may hold."""

    PATIENT = "PATIENT"
    DOCTOR = "DOCTOR"
    ADMIN = "ADMIN"
    AUDITOR = "AUDITOR"


def require_aware(moment: datetime, name: str = "datetime") -> datetime:
    """Return ``moment`` in UTC; a naive datetime is a programming error."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must carry a timezone")
    return moment.astimezone(UTC)
