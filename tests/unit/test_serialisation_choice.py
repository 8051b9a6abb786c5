"""ADR 0002: events are stored by the library's default Mapper (JSONTranscoder + DateAsISO).

Every event class of our aggregates, taken from real commands, goes through the mapper
of the application that owns it and comes back equal, metadata included; and a version 1
Patient.Registered still upcasts. No timings here: benchmarks/serialisation.py measures.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import JSONTranscoder, Mapper

from application.bootstrap import build_applications
from application.consultations import ConsultationsApplication
from application.registry import RegistryApplication
from application.scheduling import SchedulingApplication
from application.settings import Settings
from domain.base import ClinicAggregate
from domain.consultation import Consultation
from domain.doctor import Doctor
from domain.metadata import event_metadata
from domain.patient import Patient
from domain.receipts import CommandReceipt
from domain.record_access import PatientRecordAccess
from domain.slot import Slot, SlotRequestRefused
from infrastructure.personal_data.mapper import PersonalDataMapper
from process_managers.base import DateAsISO
from process_managers.booking import BookingProcessManager
from process_managers.booking_saga import BookingSaga
from process_managers.reschedule_saga import RescheduleSaga

NOW = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)
START = NOW + timedelta(days=7)
OWNERS = {  # which application stores each aggregate's events
    Patient: RegistryApplication.name,
    Doctor: RegistryApplication.name,
    PatientRecordAccess: RegistryApplication.name,
    Slot: SchedulingApplication.name,
    SlotRequestRefused: SchedulingApplication.name,
    Consultation: ConsultationsApplication.name,
    BookingSaga: BookingProcessManager.name,
    RescheduleSaga: BookingProcessManager.name,
    CommandReceipt: ConsultationsApplication.name,  # every context that takes keyed commands records them
}


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[str, Any]]:
    built = build_applications(Settings(persistence="memory"))
    yield built
    for app in built.values():
        app.close()


def declared_event_classes() -> set[type]:
    """Every event class our aggregates declare (not the library's generated Event/Created bases)."""
    return {
        value for aggregate in OWNERS for name, value in vars(aggregate).items()
        if isinstance(value, type) and issubclass(value, ClinicAggregate.Event) and name not in ("Event", "Created")
    }


def events_from_commands() -> list[tuple[type, Any]]:
    """(aggregate class, event) for events of every class, from real commands."""
    aggregates: list[ClinicAggregate] = []
    with event_metadata(correlation_id=str(uuid4()), causation_id=f"{uuid4()}@1", actor="admin:test"):
        patient = Patient(name="Zoë Ødegård", email="zoe@example.org", birth_date=date(1990, 5, 1), consent=False)
        patient.give_consent()
        patient.withdraw_consent()
        patient.erase()
        access = PatientRecordAccess(patient_id=patient.id)
        access.record_read("auditor-1", "AUDITOR", "auditAggregate")
        aggregates.append(access)
        doctor = Doctor(name="Gregory House", specialty="diagnostics")
        doctor.deactivate()
        doctor.reactivate()
        booking_id = uuid4()
        slot = Slot(doctor_id=doctor.id, start=START, duration_minutes=20)
        slot.hold(booking_id, expires_at=NOW + timedelta(seconds=30), now=NOW)
        slot.book(booking_id)
        slot.release(booking_id, reason="consultation_cancelled")
        slot.close()
        slot.reopen()
        slot.close()
        refusal = SlotRequestRefused(booking_id=uuid4(), slot_id=slot.id, command="hold", reason="the slot is closed")
        aggregates += [patient, doctor, slot, refusal]

        def consultation() -> Consultation:
            c = Consultation(patient_id=patient.id, doctor_id=doctor.id, start=START, reason="cough")
            aggregates.append(c)
            return c

        completed = consultation()
        completed.confirm()
        completed.add_note("doctor:house", "Rest and fluids.")
        moved_by = completed.request_reschedule(START + timedelta(hours=1))
        completed.move(moved_by, START + timedelta(hours=1))
        refused = completed.request_reschedule(START + timedelta(hours=2))
        completed.reschedule_failed(refused, "slot_unavailable")
        completed.complete()
        consultation().reject("slot_unavailable")
        for cancel in (Consultation.cancel_by_patient, Consultation.cancel_by_clinic):
            cancelled = consultation()
            cancelled.confirm()
            cancel(cancelled, "changed plans")
        no_show = consultation()
        no_show.confirm()
        no_show.mark_no_show()

        def saga() -> BookingSaga:  # saga_id is stamped by the saga itself
            s = BookingSaga(consultation_id=uuid4(), patient_id=patient.id, doctor_id=doctor.id,
                            slot_id=slot.id, deadline=NOW + timedelta(seconds=30))
            aggregates.append(s)
            return s

        happy = saga()
        happy.record_slot_held()
        happy.record_validation_unavailable("registry timed out", NOW + timedelta(seconds=1))
        happy.record_registrants_valid()
        happy.record_slot_booked()
        happy.release_after_cancellation("consultation_cancelled")
        timed_out = saga()
        timed_out.time_out(NOW + timedelta(minutes=1))
        stopped = saga()
        stopped.record_slot_held()
        stopped.release_after_cancellation("consultation_cancelled")

        def reschedule() -> RescheduleSaga:
            r = RescheduleSaga(consultation_id=uuid4(), request_version=3, patient_id=patient.id, doctor_id=doctor.id,
                               slot_id=slot.id, start=START, old_slot_id=uuid4(), old_holder=uuid4(),
                               deadline=NOW + timedelta(seconds=30))
            aggregates.append(r)
            return r

        moved = reschedule()
        moved.record_slot_held()
        moved.record_validation_unavailable("registry timed out", NOW + timedelta(seconds=1))
        moved.record_registrants_valid()
        moved.record_slot_booked()
        moved.record_moved()
        moved.release_after_cancellation("consultation_cancelled")
        reschedule().reject("slot_unavailable")
        withdrawn = reschedule()
        withdrawn.release_after_cancellation("consultation_cancelled")
        receipt = CommandReceipt(scope="patient-1", key="k-1", request="fingerprint", wrote=[str(uuid4())],
                                 versions=[1])
        receipt.reissue("another fingerprint", [], [])
        aggregates.append(receipt)
    return [(type(aggregate), event) for aggregate in aggregates for event in aggregate.collect_events()]


def test_the_applications_use_the_librarys_mapper_with_our_date_transcoding(apps):
    for app in apps.values():  # the library's mapper, sealing personal fields (ADR 0006) and nothing more
        assert type(app.mapper) is PersonalDataMapper and type(app.mapper).__mro__[1] is Mapper
        assert type(app.mapper.transcoder) is JSONTranscoder
        assert isinstance(app.mapper.transcoder.names.get(DateAsISO.name), DateAsISO)


def test_the_commands_below_raise_every_event_class_of_our_aggregates():
    assert {type(event) for _, event in events_from_commands()} == declared_event_classes()


def test_every_event_round_trips_equal_through_its_applications_mapper(apps):
    for aggregate, event in events_from_commands():
        mapper = apps[OWNERS[aggregate]].mapper
        stored = mapper.to_stored_event(event)
        back = mapper.to_domain_event(stored)
        assert type(back) is type(event)
        assert back == event
        assert vars(back) == vars(event)  # every field, the metadata too
        assert (back.correlation_id, back.causation_id, back.actor) == (
            event.correlation_id, event.causation_id, event.actor)
        assert back.correlation_id is not None and back.actor == "admin:test"
        if aggregate in (BookingSaga, RescheduleSaga):
            assert back.saga_id == str(event.originator_id)


def test_a_version_1_patient_registered_is_upcast_to_no_consent(apps):
    mapper = apps[RegistryApplication.name].mapper
    patient = Patient(name="Ada", email="ada@example.org", birth_date=date(1985, 12, 10), consent=True)
    [event] = patient.collect_events()
    stored = mapper.to_stored_event(event)
    state = mapper.transcoder.decode(stored.state)
    assert state.pop("class_version") == 2
    del state["consent"]  # as version 1 stored it
    back = mapper.to_domain_event(replace(stored, state=mapper.transcoder.encode(state)))
    assert back == replace(event, consent=False)
