"""Each follower's queue binds exactly the events its policy handles (distributed mode's bindings)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate
from eventsourcing.system import System
from eventsourcing.utils import get_topic

from application.bootstrap import RECORDS, SUBSCRIPTIONS, SYSTEM, bootstrap
from application.settings import Settings
from application.subscriptions import event_classes, handled, handled_topics, unbound_handlers
from domain.consultation import Consultation
from domain.slot import Slot, SlotRequestRefused
from process_managers.base import ClinicProcessApplication
from process_managers.booking_saga import BookingSaga
from process_managers.reschedule_saga import RescheduleSaga
from tests.conftest import ManualClock

START = datetime(2027, 1, 5, 9, tzinfo=UTC)


def test_each_follower_subscribes_to_exactly_the_events_its_policy_handles():
    def topics(*classes: type) -> tuple[str, ...]:
        return tuple(sorted(get_topic(c) for c in classes))

    assert SUBSCRIPTIONS == {
        ("Consultations", "Booking"): topics(Consultation.Requested, Consultation.CancelledByPatient,
                                             Consultation.CancelledByClinic, Consultation.RescheduleRequested,
                                             Consultation.Rescheduled, Consultation.RescheduleFailed),
        ("Scheduling", "Booking"): topics(Slot.Held, Slot.Booked, SlotRequestRefused.Recorded),
        ("Booking", "Consultations"): topics(BookingSaga.Completed, BookingSaga.Rejected, RescheduleSaga.SlotBooked,
                                             RescheduleSaga.Rejected),
        ("Booking", "Scheduling"): topics(BookingSaga.Started, BookingSaga.RegistrantsValidated,
                                          BookingSaga.Rejected, BookingSaga.Cancelled,
                                          BookingSaga.SlotReleaseRequested, RescheduleSaga.Started,
                                          RescheduleSaga.RegistrantsValidated, RescheduleSaga.Completed,
                                          RescheduleSaga.Rejected, RescheduleSaga.Cancelled,
                                          RescheduleSaga.SlotReleaseRequested),
        ("Consultations", "Notifications"): topics(Consultation.Requested, Consultation.Confirmed, Consultation.Rejected,
                                                   Consultation.CancelledByPatient, Consultation.CancelledByClinic,
                                                   Consultation.Rescheduled, Consultation.RescheduleFailed,
                                                   Consultation.Completed, Consultation.MarkedNoShow),
    }


def test_no_handler_is_left_without_a_binding():
    assert unbound_handlers(SYSTEM, RECORDS) == {}


def test_the_ignored_events_are_not_subscribed():
    booking = set(SUBSCRIPTIONS[("Scheduling", "Booking")]) | set(SUBSCRIPTIONS[("Consultations", "Booking")])
    assert get_topic(Slot.Opened) not in booking
    assert get_topic(Consultation.Confirmed) not in booking
    assert get_topic(BookingSaga.SlotHeld) not in SUBSCRIPTIONS[("Booking", "Scheduling")]


def test_records_name_every_aggregate_each_context_records():
    # given a clinic that books, refuses, cancels, closes, notes and erases
    clinic = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05), clock=ManualClock())
    try:
        patient = clinic.registry.register_patient("Ana", "ana@example.org", date(1990, 1, 1), True)
        other = clinic.registry.register_patient("Rui", "rui@example.org", date(1991, 1, 1), True)
        doctor = clinic.registry.register_doctor("Dr. Eva", "general practice")
        slot, spare = clinic.open_slots(doctor, [(START, 30), (START.replace(hour=10), 30)])
        booked = clinic.book(patient, doctor, START, "check-up")
        clinic.wait_until_settled()
        refused = clinic.book(other, doctor, START, "check-up")
        clinic.wait_until_settled()
        clinic.consultations.add_note(booked.consultation_id, "doctor:eva", "fine")
        clinic.consultations.cancel(booked.consultation_id, "moved away", by_patient=True)
        clinic.wait_until_settled()
        clinic.scheduling.close_slot(spare)
        clinic.registry.deactivate_doctor(doctor)
        clinic.registry.erase_patient(other)
        assert refused.consultation_id != booked.consultation_id and slot != spare

        # then every topic in each context's log is an event of the aggregates RECORDS names for it
        for app in clinic.apps():
            allowed = {get_topic(c) for aggregate in RECORDS[app.name] for c in event_classes(aggregate)}
            seen = {n.topic for n in app.recorder.select_notifications(0, 10_000)}
            assert seen and seen <= allowed, (app.name, seen - allowed)
    finally:
        clinic.close()


class Ticket(Aggregate):
    class Opened(Aggregate.Created):
        pass

    class Punched(Aggregate.Event):
        pass

    class PunchedTwice(Punched):
        pass

    class Lost(Aggregate.Event):
        pass


class Conductor(ClinicProcessApplication):
    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: Any) -> None:
        """Ignore the rest."""

    @policy.register
    def _(self, domain_event: Ticket.Punched, processing_event: Any) -> None:
        """Handles punches, and so its subclass too."""


class Inspector(ClinicProcessApplication):
    def policy(self, domain_event: Any, processing_event: Any) -> None:
        """A plain method: what it handles cannot be told."""


class Office(ClinicProcessApplication):
    pass


def test_a_handler_of_a_base_class_subscribes_its_subclasses_too():
    assert set(handled(Conductor, event_classes(Ticket))) == {Ticket.Punched, Ticket.PunchedTwice}


def test_a_policy_that_is_not_a_dispatcher_leaves_the_leader_bound_whole():
    system = System(pipes=[[Office, Inspector], [Office, Conductor]])
    assert handled(Inspector, event_classes(Ticket)) is None
    assert handled_topics(system, {"Office": (Ticket,)}) == {
        ("Office", "Conductor"): tuple(sorted(get_topic(c) for c in (Ticket.Punched, Ticket.PunchedTwice)))}


def test_a_handler_of_an_aggregate_no_leader_records_is_reported():
    system = System(pipes=[[Office, Conductor]])
    assert unbound_handlers(system, {"Office": ()}) == {"Conductor": [Ticket.Punched]}
    assert unbound_handlers(system, {"Office": (Ticket,)}) == {}
