"""Every booking saga outcome through all four contexts and the runner, on every event store.

(The deadline path is covered against the process manager directly, in
tests/unit/process_managers/test_booking_process_manager.py: the runner settles a
booking at once, so an in-process clinic never leaves a saga open to time out.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from application.bootstrap import migrate
from application.clinic import Clinic
from domain.metadata import event_metadata
from domain.slot import slot_id_for
from process_managers.ports import RegistryUnavailableError
from tests import services
from tests.conftest import BACKENDS, settings_for
from tests.kit import FakeRegistry

START = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)


@dataclass
class Given:
    """A running clinic with one patient, one doctor and the doctor's slot at START."""

    clinic: Clinic
    patient: UUID
    doctor: UUID
    slot_id: UUID

    def book(self, start: datetime = START) -> tuple[UUID, UUID]:
        accepted = self.clinic.book(self.patient, self.doctor, start, "check-up")
        return accepted.consultation_id, accepted.saga_id

    def outcome(self, consultation_id: UUID) -> tuple[str, str | None]:
        consultation = self.clinic.consultations.consultation(consultation_id)
        return consultation.status, consultation.rejection_reason

    def slot_status(self) -> str:
        return self.clinic.scheduling.slot(self.slot_id).status

    def saga_state(self, saga_id: UUID) -> tuple[str, str | None]:
        saga = self.clinic.saga(saga_id)
        return saga.state, saga.rejection_reason


def given_an_open_slot(make_clinic, backend: str, consent: bool = True) -> Given:
    clinic = make_clinic(backend)
    patient = clinic.registry.register_patient("Ana", "ana@example.org", date(1990, 1, 1), consent)
    doctor = clinic.registry.register_doctor("Dr. Rui", "cardiology")
    clinic.open_slots(doctor, [(START, 30)])
    return Given(clinic, patient, doctor, slot_id_for(doctor, START))


on_every_backend = pytest.mark.parametrize("backend", BACKENDS)


@on_every_backend
def test_booking_an_open_slot_confirms_the_consultation_and_books_the_slot(make_clinic, backend):
    # Given an open slot
    given = given_an_open_slot(make_clinic, backend)
    # When a consenting patient books it
    consultation_id, saga_id = given.book()
    given.clinic.wait_until_settled()
    # Then the consultation is confirmed, the saga completed and the slot booked for it
    assert given.outcome(consultation_id) == ("CONFIRMED", None)
    assert given.saga_state(saga_id) == ("COMPLETED", None)
    slot = given.clinic.scheduling.slot(given.slot_id)
    assert (slot.status, slot.booking_id) == ("BOOKED", saga_id)


@on_every_backend
def test_booking_a_booked_slot_is_rejected_slot_unavailable(make_clinic, backend):
    # Given a slot already booked
    given = given_an_open_slot(make_clinic, backend)
    first, first_saga = given.book()
    given.clinic.wait_until_settled()
    # When another booking asks for it
    second, second_saga = given.book()
    given.clinic.wait_until_settled()
    # Then the second is rejected and the slot stays booked for the first
    assert given.outcome(second) == ("REJECTED", "slot_unavailable")
    assert given.saga_state(second_saga) == ("REJECTED", "slot_unavailable")
    assert given.outcome(first) == ("CONFIRMED", None)
    assert given.clinic.scheduling.slot(given.slot_id).booking_id == first_saga


@on_every_backend
def test_booking_a_start_with_no_slot_is_rejected_slot_unavailable(make_clinic, backend):
    # Given a doctor with no slot at some start
    given = given_an_open_slot(make_clinic, backend)
    # When that start is booked
    consultation_id, saga_id = given.book(START + timedelta(hours=3))
    given.clinic.wait_until_settled()
    # Then the booking is rejected, and the doctor's real slot is untouched
    assert given.outcome(consultation_id) == ("REJECTED", "slot_unavailable")
    assert given.saga_state(saga_id) == ("REJECTED", "slot_unavailable")
    assert given.slot_status() == "OPEN"


@on_every_backend
def test_booking_a_deactivated_doctor_is_compensated_the_slot_reopens(make_clinic, backend):
    # Given an open slot whose doctor has since been deactivated
    given = given_an_open_slot(make_clinic, backend)
    given.clinic.registry.deactivate_doctor(given.doctor)
    # When the slot is booked
    consultation_id, saga_id = given.book()
    given.clinic.wait_until_settled()
    # Then the consultation is rejected doctor_inactive and the held slot is open again
    assert given.outcome(consultation_id) == ("REJECTED", "doctor_inactive")
    assert given.saga_state(saga_id) == ("REJECTED", "doctor_inactive")
    assert given.slot_status() == "OPEN"
    assert given.clinic.scheduling.slot(given.slot_id).booking_id is None


@on_every_backend
def test_booking_without_consent_is_rejected_patient_not_eligible_the_slot_reopens(make_clinic, backend):
    # Given a patient who did not consent
    given = given_an_open_slot(make_clinic, backend, consent=False)
    # When they book
    consultation_id, _ = given.book()
    given.clinic.wait_until_settled()
    # Then the booking is rejected and the slot is open again
    assert given.outcome(consultation_id) == ("REJECTED", "patient_not_eligible")
    assert given.slot_status() == "OPEN"


@on_every_backend
def test_booking_a_slot_of_an_unregistered_doctor_is_rejected_doctor_not_found(make_clinic, backend):
    # Given a slot opened in scheduling for a doctor the registry does not know
    given = given_an_open_slot(make_clinic, backend)
    stranger = uuid4()
    given.clinic.scheduling.open_slots(stranger, [(START, 30)])
    # When that slot is booked
    accepted = given.clinic.book(given.patient, stranger, START, "check-up")
    given.clinic.wait_until_settled()
    # Then the booking is rejected and the slot is open again
    assert given.outcome(accepted.consultation_id) == ("REJECTED", "doctor_not_found")
    assert given.clinic.scheduling.slot(slot_id_for(stranger, START)).status == "OPEN"


@on_every_backend
def test_a_registry_down_until_the_deadline_compensates_validation_unavailable(make_clinic, backend, clock):
    # Given a registry that cannot answer
    given = given_an_open_slot(make_clinic, backend)
    given.clinic.booking.registry = FakeRegistry(RegistryUnavailableError("registry timed out"))
    # When a booking is made, it waits with its slot held
    consultation_id, _ = given.book()
    given.clinic.wait_until_settled()
    assert (given.outcome(consultation_id), given.slot_status()) == (("REQUESTED", None), "HELD")
    # And when its deadline passes
    clock.advance(seconds=given.clinic.booking.saga_timeout.total_seconds())
    given.clinic.wait_until_settled()
    # Then it is rejected validation_unavailable and the slot is open again
    assert given.outcome(consultation_id) == ("REJECTED", "validation_unavailable")
    assert given.slot_status() == "OPEN"


@on_every_backend
def test_a_registry_back_before_the_deadline_confirms_the_waiting_booking(make_clinic, backend, clock):
    # Given a booking waiting on an unavailable registry
    given = given_an_open_slot(make_clinic, backend)
    in_process_registry = given.clinic.booking.registry
    given.clinic.booking.registry = FakeRegistry(RegistryUnavailableError("registry timed out"))
    consultation_id, _ = given.book()
    given.clinic.wait_until_settled()
    # When the registry is back and the retry is due
    given.clinic.booking.registry = in_process_registry
    clock.advance(seconds=1)
    given.clinic.wait_until_settled()
    # Then the booking is confirmed
    assert given.outcome(consultation_id) == ("CONFIRMED", None)


@on_every_backend
def test_cancelling_a_confirmed_consultation_releases_its_slot(make_clinic, backend):
    # Given a confirmed consultation
    given = given_an_open_slot(make_clinic, backend)
    consultation_id, saga_id = given.book()
    given.clinic.wait_until_settled()
    # When the patient cancels it
    given.clinic.consultations.cancel(consultation_id, "feeling better", by_patient=True)
    given.clinic.wait_until_settled()
    # Then the consultation is cancelled, the saga too, and the slot is open again
    assert given.outcome(consultation_id)[0] == "CANCELLED"
    assert given.saga_state(saga_id)[0] == "CANCELLED"
    assert given.slot_status() == "OPEN"


@on_every_backend
def test_a_released_slot_can_be_booked_again(make_clinic, backend):
    # Given a slot held and then released for a patient who had not consented
    given = given_an_open_slot(make_clinic, backend, consent=False)
    given.book()
    given.clinic.wait_until_settled()
    consenting = given.clinic.registry.register_patient("Rita", "rita@example.org", date(1985, 5, 5), True)
    # When another patient books it
    accepted = given.clinic.book(consenting, given.doctor, START, "check-up")
    given.clinic.wait_until_settled()
    # Then that booking is confirmed
    assert given.outcome(accepted.consultation_id) == ("CONFIRMED", None)


# Audit ---------------------------------------------------------------------------


@on_every_backend
def test_audit_at_version_1_shows_the_request_alone(make_clinic, backend):
    # Given a confirmed consultation
    given = given_an_open_slot(make_clinic, backend)
    consultation_id, _ = given.book()
    given.clinic.wait_until_settled()
    # When it is audited at version 1
    trail = given.clinic.auditor.trail("consultation", consultation_id, version=1)
    # Then it reads as requested, with one event
    assert (trail.version, trail.state["status"]) == (1, "REQUESTED")
    assert [e.type for e in trail.events] == ["Consultation.Requested"]


@on_every_backend
def test_audit_as_of_a_moment_between_two_events_shows_the_earlier_version(make_clinic, backend):
    # Given a confirmed consultation, its request and confirmation at two moments
    given = given_an_open_slot(make_clinic, backend)
    consultation_id, _ = given.book()
    given.clinic.wait_until_settled()
    requested, confirmed = given.clinic.auditor.trail("consultation", consultation_id).events
    between = requested.timestamp + (confirmed.timestamp - requested.timestamp) / 2
    assert requested.timestamp <= between < confirmed.timestamp
    # When it is audited as of the moment between them
    trail = given.clinic.auditor.trail("consultation", consultation_id, as_of=between)
    # Then it reads as it was then: version 1, requested
    assert (trail.version, trail.state["status"], len(trail.events)) == (1, "REQUESTED", 1)


@on_every_backend
def test_every_event_of_a_booking_carries_its_correlation_and_saga_ids(make_clinic, backend):
    # Given an open slot
    given = given_an_open_slot(make_clinic, backend)
    # When it is booked under a correlation id
    with event_metadata(correlation_id="corr-e2e-1"):
        consultation_id, saga_id = given.book()
    given.clinic.wait_until_settled()
    # Then every consultation, saga and slot event of the booking carries that correlation
    auditor = given.clinic.auditor
    consultation = auditor.trail("consultation", consultation_id).events
    saga = auditor.trail("saga", saga_id).events
    slot = [e for e in auditor.trail("slot", given.slot_id).events if e.version > 1]
    assert [e.type for e in consultation] == ["Consultation.Requested", "Consultation.Confirmed"]
    assert len(saga) == 4 and len(slot) == 2
    assert {e.correlation_id for e in consultation + saga + slot} == {"corr-e2e-1"}
    # And every event the saga caused, or recorded itself, carries the saga's id
    assert consultation[0].saga_id is None
    assert {e.saga_id for e in consultation[1:] + saga + slot} == {str(saga_id)}


# The store's isolation -------------------------------------------------------------


def test_sqlalchemy_keeps_every_contexts_events_in_the_configured_schema(tmp_path, request):
    # eventsourcing-sqlalchemy 1.0.1 drops SQLALCHEMY_SCHEMA for process applications' event tables;
    # Settings puts the schema on the connection's search path so no context's events land in public.
    # Given the sqlalchemy store configured with this test's own schema
    settings = settings_for("sqlalchemy", tmp_path, request)
    schema = settings.database["SQLALCHEMY_SCHEMA"]
    # When its tables are migrated
    migrate(settings)
    # Then every context's events table is in that schema, not in the database's default one
    import psycopg

    dsn = (f"host={services.POSTGRES_HOST} port={services.POSTGRES_PORT} dbname={services.POSTGRES_DB} "
           f"user={services.POSTGRES_USER}")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                            (schema,)).fetchall()
    tables = {name for (name,) in rows}
    assert {"registry_events", "scheduling_events", "consultations_events", "booking_events"} <= tables
