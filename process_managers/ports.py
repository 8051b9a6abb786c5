"""What the booking process manager needs from the outside, as ports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from domain.values import RejectionReason


@dataclass(frozen=True)
class Eligibility:
    """The registry's answer: may this patient book this doctor, and if not why."""

    allowed: bool
    reason: RejectionReason | None = None

    @classmethod
    def ok(cls) -> Eligibility:
        return cls(allowed=True)

    @classmethod
    def refused(cls, reason: RejectionReason) -> Eligibility:
        return cls(allowed=False, reason=reason)


class RegistryUnavailableError(Exception):
    """The registry could not answer in time (timeout, partition, open breaker)."""


class RegistryPort(Protocol):
    """Validates the patient (registered, consented) and the doctor (active)."""

    def booking_eligibility(self, patient_id: UUID, doctor_id: UUID) -> Eligibility: ...
