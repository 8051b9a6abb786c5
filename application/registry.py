"""The registry context: patients and doctors, and who may book with whom."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from eventsourcing.utils import get_topic

from application.common import ClinicApplication, load
from application.views import DoctorView, PatientView
from domain.base import NotFoundError
from domain.doctor import Doctor
from domain.patient import Patient
from domain.values import RejectionReason
from infrastructure.personal_data.keys import SubjectKeys
from process_managers.ports import Eligibility


class PersonalDataNotSealedError(RuntimeError):
    """The registry was built without the crypto-shredding mapper: nothing to erase with."""


class RegistryApplication(ClinicApplication):
    """Registers patients and doctors; answers booking eligibility."""

    name = "Registry"

    def register_patient(self, name: str, email: str, birth_date: date, consent: bool) -> UUID:
        """Register a patient; returns the new patient id."""
        patient = Patient(name=name, email=email, birth_date=birth_date, consent=consent)
        self.save(patient)
        return patient.id

    def register_doctor(self, name: str, specialty: str) -> UUID:
        """Register an active doctor; returns the new doctor id."""
        doctor = Doctor(name=name, specialty=specialty)
        self.save(doctor)
        return doctor.id

    def deactivate_doctor(self, doctor_id: UUID) -> None:
        """Stop a doctor taking new bookings."""
        doctor = self._doctor(doctor_id)
        doctor.deactivate()
        self.save(doctor)

    def erase_patient(self, patient_id: UUID) -> bool:
        """Erase the patient's personal data (GDPR Art. 17): destroy their key, then record it.

        Returns ``False`` if nothing was left to do. The key goes first: a crash in between
        leaves the data unreadable and the event missing, and running this again records it.
        The key is destroyed again even when the event exists (a key store restored from a
        backup brings erased keys back).
        """
        patient = self._patient(patient_id)
        destroyed = self._subject_keys().erase(str(patient_id))
        if patient.erased:
            return destroyed
        patient.erase()
        self.save(patient)
        return True

    def events_in_plain_text(self, patient_id: UUID) -> int:
        """How many of the patient's own events hold personal data unsealed: stored before
        crypto-shredding existed, they stay readable after an erasure (docs/gdpr.md)."""
        unsealed = getattr(self.mapper, "stored_in_plain_text", None)
        if unsealed is None:
            raise PersonalDataNotSealedError("the registry stores events without the sealing mapper")
        return sum(1 for stored in self.recorder.select_events(patient_id) if unsealed(stored))

    def erased_patients(self) -> list[UUID]:
        """Every patient whose erasure is recorded, in the order they were erased."""
        topic = get_topic(Patient.PersonalDataErased)
        erased, start = [], 0
        while batch := self.recorder.select_notifications(start=start, limit=1000, topics=[topic],
                                                          inclusive_of_start=False):
            erased += [n.originator_id for n in batch]
            start = batch[-1].id
        return erased

    def patient_erased(self, patient_id: UUID) -> bool:
        """Whether the patient's personal data was erased."""
        return self._patient(patient_id).erased

    def patient(self, patient_id: UUID) -> PatientView:
        p = self._patient(patient_id)
        return PatientView(p.id, p.name, p.email, p.birth_date, p.consent, p.erased)

    def doctor(self, doctor_id: UUID) -> DoctorView:
        d = self._doctor(doctor_id)
        return DoctorView(d.id, d.name, d.specialty, d.active)

    def booking_eligibility(self, patient_id: UUID, doctor_id: UUID) -> Eligibility:
        """May this patient book this doctor? (registered and consented; active)."""
        try:
            patient = self._patient(patient_id)
        except NotFoundError:
            return Eligibility.refused(RejectionReason.PATIENT_NOT_ELIGIBLE)
        if not patient.may_book:
            return Eligibility.refused(RejectionReason.PATIENT_NOT_ELIGIBLE)
        try:
            doctor = self._doctor(doctor_id)
        except NotFoundError:
            return Eligibility.refused(RejectionReason.DOCTOR_NOT_FOUND)
        if not doctor.active:
            return Eligibility.refused(RejectionReason.DOCTOR_INACTIVE)
        return Eligibility.ok()

    def _patient(self, patient_id: UUID) -> Patient:
        return load(self, patient_id, Patient, "patient")

    def _subject_keys(self) -> SubjectKeys:
        keys = getattr(self.mapper, "keys", None)
        if not isinstance(keys, SubjectKeys):
            raise PersonalDataNotSealedError("this registry stores personal data unsealed: build it with "
                                             "application.bootstrap.build_applications")
        return keys

    def _doctor(self, doctor_id: UUID) -> Doctor:
        return load(self, doctor_id, Doctor, "doctor")

