"""The consultations context: requests, the saga's verdicts, cancellations, notes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import ProcessingEvent
from eventsourcing.dispatch import singledispatchmethod

from application.common import expect_version, load
from application.views import ConsultationView, Note
from domain.consultation import Consultation
from domain.receipts import Written
from process_managers.base import ClinicProcessApplication
from process_managers.booking_saga import BookingSaga
from process_managers.reschedule_saga import RescheduleSaga, reschedule_saga_id_for

Check = Callable[[ConsultationView], None]
"""A caller's right to act on a consultation, judged on the consultation as loaded: it raises to refuse.
The interfaces pass their authorisation rule, so a command loads its aggregate once."""


def anyone(_: ConsultationView) -> None:
    """The check of a trusted caller (the CLI, the demo, tests): nothing is refused."""


class ConsultationsApplication(ClinicProcessApplication):
    """Records consultation requests and carries out the booking saga's verdicts."""

    name = "Consultations"

    def request_consultation(self, patient_id: UUID, doctor_id: UUID, start: datetime, reason: str) -> UUID:
        """Record a request; the booking saga decides it. Returns the consultation id."""
        consultation = Consultation(patient_id=patient_id, doctor_id=doctor_id, start=start, reason=reason)
        self.save(consultation)
        return consultation.id

    def consultation(self, consultation_id: UUID, check: Check = anyone) -> ConsultationView:
        return _view(self._get(consultation_id, check))

    def cancel(self, consultation_id: UUID, reason: str, by_patient: bool, *, expected_version: int | None = None,
               check: Check = anyone) -> None:
        """Cancel a requested or confirmed consultation (only at ``expected_version`` if given); the saga
        then stops, if it has not decided, and releases the slot."""
        consultation = self._get(consultation_id, check)
        expect_version(consultation, expected_version, "consultation")
        if by_patient:
            consultation.cancel_by_patient(reason)
        else:
            consultation.cancel_by_clinic(reason)
        self.save(consultation)

    def reschedule(self, consultation_id: UUID, start: datetime, *, expected_version: int | None = None,
                   check: Check = anyone) -> UUID:
        """Ask to move a confirmed consultation to ``start`` (only at ``expected_version`` if given); the
        reschedule saga moves it or leaves it as it was. Returns that saga's id."""
        consultation = self._get(consultation_id, check)
        expect_version(consultation, expected_version, "consultation")
        saga_id = consultation.request_reschedule(start)
        self.save(consultation)
        return saga_id

    def complete(self, consultation_id: UUID, check: Check = anyone) -> None:
        """The doctor saw the patient: a confirmed consultation is completed."""
        consultation = self._get(consultation_id, check)
        consultation.complete()
        self.save(consultation)

    def mark_no_show(self, consultation_id: UUID, check: Check = anyone) -> None:
        """The patient did not come to a confirmed consultation."""
        consultation = self._get(consultation_id, check)
        consultation.mark_no_show()
        self.save(consultation)

    def add_note(self, consultation_id: UUID, author: str, text: str, check: Check = anyone) -> None:
        """Add the doctor's clinical note to a confirmed or completed consultation."""
        consultation = self._get(consultation_id, check)
        consultation.add_note(author, text)
        self.save(consultation)

    def notes(self, consultation_id: UUID, check: Check = anyone) -> list[Note]:
        return [Note(n.author, n.text, n.written_at) for n in self._get(consultation_id, check).notes]

    def _get(self, consultation_id: UUID, check: Check = anyone) -> Consultation:
        consultation = load(self, consultation_id, Consultation, "consultation")
        check(_view(consultation))
        return consultation

    def aggregates_for(self, domain_event: Any) -> Iterable[UUID]:
        """The consultation each saga verdict loads (a batch loads them with one query)."""
        if isinstance(domain_event, (BookingSaga.Completed, BookingSaga.Rejected, RescheduleSaga.SlotBooked,
                                     RescheduleSaga.Rejected)):
            return (domain_event.consultation_id,)
        return ()

    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        """Ignore events consultations does not react to."""

    @policy.register
    def _(self, domain_event: BookingSaga.Completed, processing_event: ProcessingEvent) -> None:
        consultation = self._consultation_of(domain_event)
        consultation.confirm()
        processing_event.collect_events(consultation)

    @policy.register
    def _(self, domain_event: BookingSaga.Rejected, processing_event: ProcessingEvent) -> None:
        consultation = self._consultation_of(domain_event)
        consultation.reject(domain_event.reason)
        processing_event.collect_events(consultation)

    @policy.register
    def _(self, domain_event: RescheduleSaga.SlotBooked, processing_event: ProcessingEvent) -> None:
        consultation = self._consultation_of(domain_event)
        consultation.move(domain_event.originator_id, domain_event.start)
        processing_event.collect_events(consultation)

    @policy.register
    def _(self, domain_event: RescheduleSaga.Rejected, processing_event: ProcessingEvent) -> None:
        consultation = self._consultation_of(domain_event)
        consultation.reschedule_failed(domain_event.originator_id, domain_event.reason)
        processing_event.collect_events(consultation)

    def _consultation_of(self, saga_event: Any) -> Consultation:
        return self._get(saga_event.consultation_id)


def started_reschedule(wrote: tuple[Written, ...]) -> UUID:
    """A repeated reschedule request's answer: the saga it started (named by the consultation's version
    its request left)."""
    return reschedule_saga_id_for(wrote[0].id, wrote[0].version)


def _view(c: Consultation) -> ConsultationView:
    return ConsultationView(c.id, c.patient_id, c.doctor_id, c.start, str(c.status), c.reason, c.rejection_reason,
                            c.version, c.rescheduling_to, c.reschedule_failure)
