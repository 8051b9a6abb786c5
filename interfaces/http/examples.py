"""One realistic example per request and response body of the public API (for the OpenAPI document).

``openapi.complete`` puts ``EXAMPLES[schema]`` on every request body and response whose schema
is that struct; ``tests/e2e/test_openapi_lint.py`` decodes each one strictly as its struct (and
redocly's ``no-invalid-media-type-examples`` checks it against the JSON schema), so an example
cannot drift from its schema. A new body type needs its example here.
"""

from __future__ import annotations

from typing import Any

from application import views
from interfaces.http import schemas

EXAMPLE_IDS = {
    "patient": "9d3a4c57-7a3e-4a53-9f65-2b1f5d6c8e01",
    "doctor": "4f1b2a6e-0c3d-4e5f-8a9b-1c2d3e4f5a6b",
    "consultation": "0b7e3d1c-5a2f-4c6e-9d8b-7a1f2e3c4d5e",
    "saga": "6c2d8e4f-1a3b-5c7d-9e0f-2a4b6c8d0e1f",
    "slot": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
    "webhook": "5e8f2c1a-3b4d-4e6f-8a0b-2c4d6e8f0a1b",
    "delivery": "7d9e1f3a-5b6c-4d8e-9f0a-1b2c3d4e5f6a",
}
PATH_EXAMPLES = {"patient_id": EXAMPLE_IDS["patient"], "doctor_id": EXAMPLE_IDS["doctor"],
                 "consultation_id": EXAMPLE_IDS["consultation"], "saga_id": EXAMPLE_IDS["saga"],
                 "aggregate_id": EXAMPLE_IDS["consultation"], "kind": "consultation",
                 "webhook_id": EXAMPLE_IDS["webhook"]}
"""What the example problems' ``instance`` puts in each path parameter."""

START = "2027-03-01T09:00:00Z"
CONSULTATION = {
    "consultation_id": EXAMPLE_IDS["consultation"], "patient_id": EXAMPLE_IDS["patient"],
    "doctor_id": EXAMPLE_IDS["doctor"], "start": START, "status": "CONFIRMED", "reason": "persistent cough",
    "rejection_reason": None,
}

WEBHOOK = {"webhook_id": EXAMPLE_IDS["webhook"], "url": "https://app.example.org/hooks/clinic",
           "events": ["consultation.confirmed", "consultation.rejected"], "audience": "own",
           "created_at": "2027-02-27T10:00:00Z", "version": 1}

READ_MODEL = {
    "name": "consultation_detail", "serving_version": 3, "code_version": 3, "lag": 2, "lag_seconds": 0.041,
    "logs": {"Consultations": {"position": 1840, "head": 1842, "lag": 2, "lag_seconds": 0.041},
             "Booking": {"position": 5120, "head": 5120, "lag": 0, "lag_seconds": 0.0}},
    "building": None,
    "last_rebuild": {"started_at": "2027-02-27T03:00:00Z", "state": "done", "percent": 100, "version": 3, "done": 6960, "total": 6960,
                     "events_per_second": None, "eta_seconds": None, "error": None}}

EXAMPLES: dict[type, Any] = {
    schemas.RegisterPatient: {"name": "Ana Lima", "email": "ana.lima@example.org", "birth_date": "1990-02-02",
                              "consent": True},
    schemas.PatientRegistered: {"patient_id": EXAMPLE_IDS["patient"]},
    schemas.PatientRecord: {"patient_id": EXAMPLE_IDS["patient"], "name": "Ana Lima", "email": "ana.lima@example.org",
                            "birth_date": "1990-02-02", "consent": True, "erased": False},
    schemas.PatientRecordAccessLog: {"patient_id": EXAMPLE_IDS["patient"], "reads": [
        {"reader": "ops-1", "roles": "ADMIN", "operation": "getPatient", "read_at": "2027-02-27T10:15:00Z"}]},
    schemas.RegisterDoctor: {"name": "Dr Vera Costa", "specialty": "general practice"},
    schemas.DoctorRegistered: {"doctor_id": EXAMPLE_IDS["doctor"]},
    schemas.Doctor: {"doctor_id": EXAMPLE_IDS["doctor"], "name": "Dr Vera Costa", "specialty": "general practice",
                     "active": True},
    schemas.DoctorPage: {"items": [{"doctor_id": EXAMPLE_IDS["doctor"], "name": "Dr Vera Costa",
                                    "specialty": "general practice", "active": True}], "next_cursor": None},
    schemas.DoctorStatus: {"doctor_id": EXAMPLE_IDS["doctor"], "active": False},
    schemas.OpenSlots: {"slots": [{"start": START, "duration_minutes": 30},
                                  {"start": "2027-03-01T09:30:00Z", "duration_minutes": 30}]},
    schemas.SlotsOpened: {"slot_ids": [EXAMPLE_IDS["slot"], "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e"]},
    schemas.OpenAvailability: {"weekdays": ["MON", "TUE", "WED", "THU", "FRI"], "opens": "09:00", "closes": "12:00",
                               "slot_minutes": 30, "first_day": "2027-03-01", "weeks": 4,
                               "time_zone": "Europe/Lisbon"},
    schemas.AvailabilityOpened: {"slot_ids": [EXAMPLE_IDS["slot"], "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e"],
                                 "already_open": 0},
    schemas.SlotStatus: {"slot_id": EXAMPLE_IDS["slot"], "status": "CLOSED"},
    schemas.DoctorSlots: {"doctor_id": EXAMPLE_IDS["doctor"], "date": "2027-03-01", "slots": [
        {"slot_id": EXAMPLE_IDS["slot"], "start": START, "duration_minutes": 30, "status": "available"}]},
    schemas.BookConsultation: {"patient_id": EXAMPLE_IDS["patient"], "doctor_id": EXAMPLE_IDS["doctor"],
                               "start": START, "reason": "persistent cough"},
    schemas.BookingAccepted: {"consultation_id": EXAMPLE_IDS["consultation"], "saga_id": EXAMPLE_IDS["saga"],
                              "status": "REQUESTED"},
    schemas.Consultation: CONSULTATION,
    schemas.ConsultationV2: {"consultation_id": EXAMPLE_IDS["consultation"], "version": 2,
                             "patient_id": EXAMPLE_IDS["patient"], "doctor_id": EXAMPLE_IDS["doctor"], "start": START,
                             "reason_for_visit": "persistent cough", "status": {"code": "CONFIRMED"}},
    schemas.RescheduleConsultation: {"start": "2027-03-01T10:30:00Z"},
    schemas.RescheduleAccepted: {"consultation_id": EXAMPLE_IDS["consultation"],
                                 "saga_id": "7f3e2d1c-0b9a-5877-8c6d-5e4f3a2b1c0d", "start": "2027-03-01T10:30:00Z",
                                 "status": "pending"},
    schemas.CancelConsultation: {"reason": "cannot come"},
    schemas.ConsultationCancelled: {"consultation_id": EXAMPLE_IDS["consultation"], "status": "CANCELLED"},
    schemas.ConsultationEnded: {"consultation_id": EXAMPLE_IDS["consultation"], "status": "COMPLETED"},
    schemas.AddNote: {"text": "BP 120/80; review in two weeks"},
    schemas.NoteAdded: {"consultation_id": EXAMPLE_IDS["consultation"]},
    schemas.Notes: {"consultation_id": EXAMPLE_IDS["consultation"], "notes": [
        {"author": EXAMPLE_IDS["doctor"], "text": "BP 120/80; review in two weeks",
         "written_at": "2027-03-01T09:25:00Z"}]},
    schemas.ConsultationPage: {"items": [CONSULTATION], "next_cursor": None},
    schemas.Agenda: {"doctor_id": EXAMPLE_IDS["doctor"], "date": "2027-03-01", "consultations": [CONSULTATION]},
    views.Saga: {"saga_id": EXAMPLE_IDS["saga"], "consultation_id": EXAMPLE_IDS["consultation"],
                   "state": "COMPLETED", "rejection_reason": None, "deadline": "2027-02-27T10:00:30Z", "steps": [
                       {"name": step, "status": status, "at": "2027-02-27T10:00:00Z"} for step, status in [
                           ("hold_slot", "requested"), ("hold_slot", "succeeded"),
                           ("validate_registrants", "requested"), ("validate_registrants", "succeeded"),
                           ("book_slot", "requested"), ("book_slot", "succeeded"),
                           ("confirm_consultation", "requested")]],
                 "kind": "booking", "patient_id": EXAMPLE_IDS["patient"], "doctor_id": EXAMPLE_IDS["doctor"],
                 "started_at": "2027-02-27T10:00:00Z", "waiting_since": "2027-02-27T10:00:00Z",
                 "correlation_id": "3b0e6f2a-9a51-4c39-8f43-0f6d2a7c1d55", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
    schemas.AuditTrail: {"kind": "consultation", "id": EXAMPLE_IDS["consultation"], "version": 2,
                         "state": {"status": "CONFIRMED", "start": START}, "events": [
                             {"type": "Consultation.Requested", "version": 1, "timestamp": "2027-02-27T10:00:00Z",
                              "correlation_id": "3b0e6f2a-9a51-4c39-8f43-0f6d2a7c1d55",
                              "causation_id": "request:5f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "saga_id": None,
                              "actor": EXAMPLE_IDS["patient"], "data": {"reason": "persistent cough"}},
                             {"type": "Consultation.Confirmed", "version": 2, "timestamp": "2027-02-27T10:00:01Z",
                              "correlation_id": "3b0e6f2a-9a51-4c39-8f43-0f6d2a7c1d55",
                              "causation_id": "event:BookingSaga:17", "saga_id": EXAMPLE_IDS["saga"],
                              "actor": None, "data": {}}], "integrity": "verified"},
    schemas.Health: {"status": "ok", "checks": {"postgres": True, "runner": True}},
    schemas.SagaActionTaken: {"saga_id": EXAMPLE_IDS["saga"], "action": "compensate"},
    schemas.SagaSummaryPage: {"items": [{
        "saga_id": EXAMPLE_IDS["saga"], "kind": "booking", "consultation_id": EXAMPLE_IDS["consultation"],
        "patient_id": EXAMPLE_IDS["patient"], "doctor_id": EXAMPLE_IDS["doctor"],
        "started_at": "2027-02-27T10:00:00Z", "state": "VALIDATING", "rejection_reason": None,
        "deadline": "2027-02-27T10:00:30Z", "waiting_since": "2027-02-27T10:00:00Z", "stuck": True,
        "correlation_id": "3b0e6f2a-9a51-4c39-8f43-0f6d2a7c1d55", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}],
        "next_cursor": None},
    schemas.ReadModel: READ_MODEL,
    schemas.ReadModelList: {"items": [READ_MODEL]},
    schemas.ReadModelRebuildStarted: {"name": "consultation_detail", "started_at": "2027-02-27T03:00:00Z"},
    schemas.CreateWebhook: {"url": "https://app.example.org/hooks/clinic",
                            "events": ["consultation.confirmed", "consultation.rejected"]},
    schemas.WebhookCreated: {**WEBHOOK, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw7JP1qcBmzG0="},
    schemas.Webhook: WEBHOOK,
    schemas.WebhookList: {"items": [WEBHOOK]},
    schemas.WebhookDeliveryPage: {"items": [{
        "delivery_id": EXAMPLE_IDS["delivery"], "event_type": "consultation.confirmed",
        "consultation_id": EXAMPLE_IDS["consultation"], "created_at": "2027-02-27T10:15:00Z", "status": "pending",
        "attempts": 2, "last_attempt_at": "2027-02-27T10:15:10Z", "last_status_code": 503,
        "last_error": "the client answered 503", "next_attempt_at": "2027-02-27T10:15:30Z"}], "next_cursor": None},
}
"""Body type -> its example, as JSON (strings for UUIDs and date-times)."""


def schema_examples(examples: dict[type, Any]) -> dict[str, Any]:
    """The examples by the name the OpenAPI document gives each struct's schema (its class name)."""
    return {cls.__name__: value for cls, value in examples.items()}
