"""Who read a patient's record, and when: reads of personal data are themselves audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from domain.base import ClinicAggregate


@dataclass(frozen=True)
class RecordRead:
    """One read: who (``reader``, with the roles they acted in), through which operation, when."""

    reader: str
    roles: str
    operation: str
    read_at: datetime


class PatientRecordAccess(ClinicAggregate):
    """The access log of one patient's record: one stream per patient, one event per read.

    It holds ids and role names only, no personal data, so it survives the patient's erasure.
    """

    class Opened(ClinicAggregate.Created):
        patient_id: UUID

    class Read(ClinicAggregate.Event):
        reader: str
        roles: str
        operation: str

    @staticmethod
    def create_id(patient_id: UUID) -> UUID:
        """One log per patient, found from the patient's id alone."""
        return uuid5(NAMESPACE_URL, f"urn:clinic:patient-record-access:{patient_id}")

    @event(Opened)
    def __init__(self, patient_id: UUID) -> None:
        self.patient_id = patient_id
        self.reads: list[RecordRead] = []

    def record_read(self, reader: str, roles: str, operation: str) -> None:
        """Append a read of the record by ``reader`` acting as ``roles`` (space-separated)."""
        if not reader:
            raise ValueError("a read needs a reader")
        self._read(reader=reader, roles=roles, operation=operation)

    @event(Read)
    def _read(self, reader: str, roles: str, operation: str) -> None:
        self.reads.append(RecordRead(reader, roles, operation, self.modified_on))
