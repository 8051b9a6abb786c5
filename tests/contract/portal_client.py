"""The patient portal's client of the public API: the stand-in for the portal's own code.

A consumer team would own this; it lives here so the pact the portal's tests write is produced by
code that actually calls the API (and decodes its answers strictly), not by hand-written JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

import httpx
import msgspec

Status = Literal["REQUESTED", "CONFIRMED", "REJECTED", "CANCELLED", "COMPLETED", "NO_SHOW"]


class BookingReceipt(msgspec.Struct, frozen=True):
    """What the portal keeps after asking for a booking: where to poll its outcome."""

    consultation_id: UUID
    saga_id: UUID
    status: Status
    location: str = ""


class RescheduleReceipt(msgspec.Struct, frozen=True):
    """What the portal keeps after asking to move a consultation: where to read whether it moved."""

    consultation_id: UUID
    saga_id: UUID
    start: datetime
    status: Literal["pending"]
    location: str = ""


class WebhookSubscription(msgspec.Struct, frozen=True):
    """The portal's subscription, and the secret it verifies each delivery with (shown only now)."""

    webhook_id: UUID
    url: str
    events: list[str]
    audience: Literal["own", "all"]
    secret: str


class State(msgspec.Struct, frozen=True):
    code: Status
    reason: str | None = None


class ConsultationStatus(msgspec.Struct, frozen=True):
    """A consultation as API v2 shows it (v1's read is deprecated: docs/deprecation.md)."""

    consultation_id: UUID
    version: int
    patient_id: UUID
    doctor_id: UUID
    start: datetime
    reason_for_visit: str
    status: State


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


class ProblemBody(msgspec.Struct, frozen=True):
    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None


class ApiProblem(Exception):
    """The API refused: an RFC 9457 problem the portal shows (by its stable ``type``)."""

    def __init__(self, problem: ProblemBody) -> None:
        super().__init__(f"{problem.status} {problem.type}: {problem.detail or problem.title}")
        self.problem = problem


class PortalClient:
    """Books consultations for the signed-in patient and follows them."""

    def __init__(self, base_url: str, access_token: str) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=5.0, trust_env=False,
                                  headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"})

    def book(self, patient_id: UUID, doctor_id: UUID, start: datetime, reason: str) -> BookingReceipt:
        body = {"patient_id": str(patient_id), "doctor_id": str(doctor_id), "start": start.isoformat(),
                "reason": reason}
        response = self._http.post("/v1/consultations", json=body)
        if response.status_code != 202:
            raise _problem(response)
        receipt = msgspec.json.decode(response.content, type=BookingReceipt)
        return msgspec.structs.replace(receipt, location=response.headers["Location"])

    def reschedule(self, consultation_id: UUID, start: datetime) -> RescheduleReceipt:
        """Ask to move a confirmed consultation; the answer says where to follow it."""
        response = self._http.post(f"/v1/consultations/{consultation_id}/reschedule", json={"start": start.isoformat()})
        if response.status_code != 202:
            raise _problem(response)
        receipt = msgspec.json.decode(response.content, type=RescheduleReceipt)
        return msgspec.structs.replace(receipt, location=response.headers["Location"])

    def subscribe(self, url: str, events: list[str]) -> WebhookSubscription:
        """Have the API push the patient's booking outcomes to the portal's ``url``; keep the secret."""
        response = self._http.post("/v1/webhooks", json={"url": url, "events": events})
        if response.status_code != 201:
            raise _problem(response)
        return msgspec.json.decode(response.content, type=WebhookSubscription)

    def consultation(self, consultation_id: UUID) -> ConsultationStatus:
        """A consultation's current state (the portal polls it after booking)."""
        return self._read(f"/v2/consultations/{consultation_id}")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PortalClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read(self, path: str) -> ConsultationStatus:
        response = self._http.get(path)
        if response.status_code != 200:
            raise _problem(response)
        return msgspec.json.decode(response.content, type=ConsultationStatus)


def _problem(response: httpx.Response) -> ApiProblem:
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        raise RuntimeError(f"unexpected answer {response.status_code} without a problem body")
    return ApiProblem(msgspec.json.decode(response.content, type=ProblemBody))
