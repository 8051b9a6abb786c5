"""The whole booking system under any sequence of bookings, cancellations (before or after the saga
decides), reschedules (alone, two of one booking at once, racing a booking of the target slot),
deactivations and saga timeouts: its invariants hold, read from its own queries and audit trails.

One clinic per example, on the memory event store with the embedded runner. Every
rule ends with ``clinic.wait_until_settled()``: in embedded mode each saga runs all
its steps within one settle, so the invariants see a quiescent system.

Doctors cannot be reactivated: ``RegistryApplication`` has no use case for it (only
the ``Doctor`` aggregate has ``reactivate``), so there is no reactivation rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from uuid import UUID

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from application.bootstrap import bootstrap
from application.clinic import Clinic
from application.settings import Settings
from application.views import ConsultationView, SlotView
from domain.base import NotFoundError
from domain.consultation import ConsultationStateError
from domain.slot import slot_id_for
from domain.values import RejectionReason
from process_managers.booking_saga import OPEN_STATES, saga_id_for
from process_managers.ports import RegistryUnavailableError
from tests.conftest import ManualClock
from tests.kit import FakeRegistry

SETTINGS = Settings(persistence="memory", runner_tick_seconds=0.05)
DAY = datetime(2027, 1, 5, tzinfo=UTC)
HOURS = (9, 10, 11, 12)
PATIENTS = {"Ana": True, "Rita": True, "Nuno": False}  # name -> consents to data processing
DOCTORS = {"Dr. Rui": 12, "Dr. Eva": 9}  # name -> the one start hour left unopened

patients = st.sampled_from(list(PATIENTS))
doctors = st.sampled_from(list(DOCTORS))
hours = st.sampled_from(HOURS)
utc_offsets = st.sampled_from([0, 2, -5])  # the same start, written in another timezone
REJECTION_REASONS = {str(reason) for reason in RejectionReason}


def start_at(hour: int, utc_offset: int = 0) -> datetime:
    return (DAY + timedelta(hours=hour)).astimezone(timezone(timedelta(hours=utc_offset)))


def slot_or_none(clinic: Clinic, slot_id: UUID) -> SlotView | None:
    try:
        return clinic.scheduling.slot(slot_id)
    except NotFoundError:
        return None


def slot_of(consultation: ConsultationView) -> UUID:
    return slot_id_for(consultation.doctor_id, consultation.start)


def saga_of(consultation: ConsultationView) -> UUID:
    return saga_id_for(consultation.consultation_id)


def slot_history(clinic: Clinic, slot_id: UUID) -> list[tuple[str, str | None]]:
    """The slot's audited events as (type, booking id), oldest first."""
    return [(e.type, e.data.get("booking_id")) for e in clinic.auditor.trail("slot", slot_id).events]


def sagas_of(clinic: Clinic, consultation_id: UUID) -> set[str]:
    """Every saga that ever held or booked a slot for the consultation: its booking's and each reschedule's."""
    trail = clinic.auditor.trail("consultation", consultation_id).events
    return {str(saga_id_for(consultation_id))} | {str(e.data["reschedule_id"]) for e in trail
                                                  if e.type == "Consultation.RescheduleRequested"}


def holder_of(clinic: Clinic, consultation_id: UUID) -> UUID:
    """The saga whose booking holds the consultation's slot now (its booking saga until a reschedule moved it)."""
    consultation = clinic.consultations.repository.get(consultation_id)
    return consultation.held_by or saga_id_for(consultation_id)


class BookingSystemMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.clinic = bootstrap(SETTINGS, clock=self.clock)
        registry = self.clinic.registry
        self.patients = {name: registry.register_patient(name, f"{name.lower()}@example.org", date(1990, 1, 1),
                                                         consent) for name, consent in PATIENTS.items()}
        self.doctors = {name: registry.register_doctor(name, "general practice") for name in DOCTORS}
        self.opened_slots: list[tuple[UUID, datetime]] = []
        for name, unopened_hour in DOCTORS.items():
            starts = [start_at(hour) for hour in HOURS if hour != unopened_hour]
            self.clinic.open_slots(self.doctors[name], [(start, 30) for start in starts])
            self.opened_slots += [(self.doctors[name], start) for start in starts]
        self.consultation_ids: list[UUID] = []
        self.clinic.wait_until_settled()

    def teardown(self) -> None:
        self.clinic.close()

    # Reading the system ---------------------------------------------------------

    def consultations(self, status: str | None = None) -> list[ConsultationView]:
        views = [self.clinic.consultations.consultation(cid) for cid in self.consultation_ids]
        return [view for view in views if status is None or view.status == status]

    def has_confirmed_consultation(self) -> bool:
        return bool(self.consultations("CONFIRMED"))

    # Rules ------------------------------------------------------------------------

    @rule(patient=patients, doctor=doctors, hour=hours, utc_offset=utc_offsets)
    def book(self, patient: str, doctor: str, hour: int, utc_offset: int) -> None:
        accepted = self.clinic.book(self.patients[patient], self.doctors[doctor], start_at(hour, utc_offset),
                                    "check-up")
        self.consultation_ids.append(accepted.consultation_id)
        self.clinic.wait_until_settled()

    @rule(patient=patients, doctor=doctors, hour=hours)
    def book_and_cancel_before_the_saga_decides(self, patient: str, doctor: str, hour: int) -> None:
        """The patient cancels while the registry cannot answer: the saga waits to validate (or was
        already refused the slot, then the cancellation is refused), deterministically, so Hypothesis
        sees the same system on every run of an example."""
        with self.registry_down():
            accepted = self.clinic.book(self.patients[patient], self.doctors[doctor], start_at(hour), "check-up")
            self.consultation_ids.append(accepted.consultation_id)
            self.clinic.wait_until_settled()
            try:
                self.clinic.consultations.cancel(accepted.consultation_id, "changed my mind", by_patient=True)
            except ConsultationStateError:
                assert self.clinic.consultations.consultation(accepted.consultation_id).status == "REJECTED"
            self.clinic.wait_until_settled()

    @precondition(has_confirmed_consultation)
    @rule(data=st.data(), hour=hours, utc_offset=utc_offsets)
    def reschedule(self, data: st.DataObject, hour: int, utc_offset: int) -> None:
        """Move a confirmed consultation to another start of its doctor: open and free (moved), taken,
        unopened (kept as it was), or its own start (refused)."""
        consultation_id = self._pick_confirmed(data)
        self._request_reschedule(consultation_id, start_at(hour, utc_offset))
        self.clinic.wait_until_settled()

    @precondition(has_confirmed_consultation)
    @rule(data=st.data(), first=hours, second=hours)
    def reschedule_twice_at_once(self, data: st.DataObject, first: int, second: int) -> None:
        """Two reschedules of one booking: while the first waits on the registry (it held its slot) the
        second is refused; one that already failed (its slot was taken) does not stand in the way."""
        consultation_id = self._pick_confirmed(data)
        with self.registry_down():
            self._request_reschedule(consultation_id, start_at(first))
            if self.clinic.consultations.repository.get(consultation_id).pending_reschedule is not None:
                with pytest.raises(ConsultationStateError, match="already under way"):
                    self.clinic.consultations.reschedule(consultation_id, start_at(second))
            else:
                self._request_reschedule(consultation_id, start_at(second))
        self._retry_validations()

    @precondition(has_confirmed_consultation)
    @rule(data=st.data(), patient=patients, hour=hours, booking_first=st.booleans())
    def reschedule_racing_a_booking_of_the_target(self, data: st.DataObject, patient: str, hour: int,
                                                  booking_first: bool) -> None:
        """A reschedule and another patient's booking want the same slot; the registry holds both sagas
        after their holds, so whichever holds first wins and the other is refused the slot."""
        consultation_id = self._pick_confirmed(data)
        doctor_id = self.clinic.consultations.consultation(consultation_id).doctor_id
        with self.registry_down():
            if not booking_first:
                self._request_reschedule(consultation_id, start_at(hour))
            self.consultation_ids.append(self.clinic.book(self.patients[patient], doctor_id, start_at(hour),
                                                          "check-up").consultation_id)
            self.clinic.wait_until_settled()
            if booking_first:
                self._request_reschedule(consultation_id, start_at(hour))
        self._retry_validations()

    @precondition(has_confirmed_consultation)
    @rule(data=st.data(), hour=hours)
    def cancel_while_a_reschedule_waits(self, data: st.DataObject, hour: int) -> None:
        """The patient cancels while the move waits on the registry: both the booked slot and the new
        hold are given back."""
        consultation_id = self._pick_confirmed(data)
        with self.registry_down():
            self._request_reschedule(consultation_id, start_at(hour))
            self.clinic.consultations.cancel(consultation_id, "not coming after all", by_patient=True)
            self.clinic.wait_until_settled()
            assert self.slots_taken_by(consultation_id) == []  # at once, not only once the registry answers
        self._retry_validations()

    def _pick_confirmed(self, data: st.DataObject) -> UUID:
        confirmed = [c.consultation_id for c in self.consultations("CONFIRMED")]
        return data.draw(st.sampled_from(confirmed), label="consultation")

    def _request_reschedule(self, consultation_id: UUID, start: datetime) -> bool:
        """Ask to move it; ``False`` when refused at once (its own start, or another reschedule under way)."""
        try:
            self.clinic.consultations.reschedule(consultation_id, start)
        except ConsultationStateError:
            return False
        self.clinic.wait_until_settled()
        return True

    @contextmanager
    def registry_down(self) -> Iterator[None]:
        """Sagas that reach validation wait there (retried later) until the block ends."""
        registry = self.clinic.booking.registry
        self.clinic.booking.registry = FakeRegistry(RegistryUnavailableError("the registry is down"))
        try:
            yield
        finally:
            self.clinic.booking.registry = registry

    def _retry_validations(self) -> None:
        """The registry is back: the timer's next retry (1 s later) validates the sagas that waited."""
        self.clock.advance(seconds=2)
        self.clinic.booking.retry_deferred_validations()
        self.clinic.wait_until_settled()

    @precondition(has_confirmed_consultation)
    @rule(data=st.data(), by_patient=st.booleans())
    def cancel_a_confirmed_consultation(self, data: st.DataObject, by_patient: bool) -> None:
        confirmed = [c.consultation_id for c in self.consultations("CONFIRMED")]
        consultation_id = data.draw(st.sampled_from(confirmed), label="consultation")
        self.clinic.consultations.cancel(consultation_id, "cannot come", by_patient=by_patient)
        self.clinic.wait_until_settled()

    @rule(doctor=doctors)
    def deactivate_doctor(self, doctor: str) -> None:
        self.clinic.registry.deactivate_doctor(self.doctors[doctor])
        self.clinic.wait_until_settled()

    @rule()
    def time_out_overdue_sagas(self) -> None:
        self.clock.advance(seconds=SETTINGS.saga_timeout.total_seconds() + 1)
        self.clinic.booking.time_out_overdue_sagas()
        self.clinic.wait_until_settled()

    # Invariants -------------------------------------------------------------------

    @invariant()
    def a_slot_is_never_booked_by_two_consultations(self) -> None:
        views = self.consultations()
        for doctor_id, start in self.opened_slots:
            here = [c for c in views if (c.doctor_id, c.start) == (doctor_id, start)]
            confirmed = {holder_of(self.clinic, c.consultation_id) for c in here if c.status == "CONFIRMED"}
            assert len(confirmed) <= 1, f"slot {doctor_id}@{start} confirmed for several sagas: {confirmed}"
            slot = self.clinic.scheduling.slot(slot_id_for(doctor_id, start))
            if slot.status == "BOOKED":
                assert confirmed == {slot.booking_id}, f"slot booked for {slot.booking_id}, confirmed: {confirmed}"

    @invariant()
    def a_confirmed_consultation_holds_its_booked_slot_and_no_other(self) -> None:
        for consultation in self.consultations():
            mine = self.slots_taken_by(consultation.consultation_id)
            if consultation.status == "CONFIRMED":
                holder = holder_of(self.clinic, consultation.consultation_id)
                slot = self.clinic.scheduling.slot(slot_of(consultation))
                assert (slot.status, slot.booking_id) == ("BOOKED", holder), consultation
                assert self.clinic.saga(holder).state == "COMPLETED", consultation
                assert mine == [slot_of(consultation)], (consultation, mine)
            else:
                assert mine == [], (consultation, mine)

    def slots_taken_by(self, consultation_id: UUID) -> list[UUID]:
        """The opened slots held or booked by any saga of the consultation."""
        sagas = sagas_of(self.clinic, consultation_id)
        slots = [self.clinic.scheduling.slot(slot_id_for(doctor_id, start)) for doctor_id, start in self.opened_slots]
        return [s.slot_id for s in slots if s.status in ("HELD", "BOOKED") and str(s.booking_id) in sagas]

    @invariant()
    def a_rejected_consultation_has_a_known_reason_and_no_slot(self) -> None:
        for consultation in self.consultations("REJECTED"):
            assert consultation.rejection_reason in REJECTION_REASONS, consultation
            slot = slot_or_none(self.clinic, slot_of(consultation))
            assert slot is None or slot.booking_id != saga_of(consultation), (consultation, slot)

    @invariant()
    def no_saga_is_left_open_after_settling(self) -> None:
        waiting = {str(state) for state in OPEN_STATES} | {"MOVING"}
        for consultation in self.consultations():
            for saga_id in sagas_of(self.clinic, consultation.consultation_id):
                saga = self.clinic.saga(UUID(saga_id))
                assert saga.state not in waiting, (consultation, saga)

    @invariant()
    def a_cancelled_consultation_stopped_the_saga_that_held_its_slot(self) -> None:
        """(An earlier saga that handed its slot over to a reschedule stays ``COMPLETED``; the slots are
        checked by ``a_confirmed_consultation_holds_its_booked_slot_and_no_other``.)"""
        for consultation in self.consultations("CANCELLED"):
            holder = self.clinic.saga(holder_of(self.clinic, consultation.consultation_id))
            assert holder.state in {"CANCELLED", "REJECTED"}, consultation

    @invariant()
    def at_most_one_confirmed_per_start_and_the_audit_trail_agrees(self) -> None:
        views = self.consultations()
        confirmed = Counter((c.doctor_id, c.start) for c in views if c.status == "CONFIRMED")
        assert all(count <= 1 for count in confirmed.values()), confirmed
        for consultation in views:
            rebuilt = self.clinic.auditor.trail("consultation", consultation.consultation_id)
            assert rebuilt.state["status"] == consultation.status, (rebuilt.state, consultation)


BookingSystemMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestBookingSystem = BookingSystemMachine.TestCase
