"""Reads of a patient's record, recorded before the record is returned (GDPR art. 30/15)."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application.registry import RegistryApplication
from application.views import PatientView
from domain.record_access import PatientRecordAccess, RecordRead

_ATTEMPTS = 5
"""Concurrent reads of one patient append to one stream: a version conflict is retried."""


class PatientRecords:
    """The patient record use cases that must leave an access trail, over the registry's store."""

    def __init__(self, registry: RegistryApplication) -> None:
        self.registry = registry

    def read(self, patient_id: UUID, reader: str, roles: Iterable[str], operation: str) -> PatientView:
        """The patient's record; the read is recorded first (no trail, no data)."""
        view = self.registry.patient(patient_id)
        self.record_read(patient_id, reader, roles, operation)
        return view

    def record_read(self, patient_id: UUID, reader: str, roles: Iterable[str], operation: str) -> None:
        """Append one read to the patient's access log (created on the first read)."""
        for attempt in range(_ATTEMPTS):
            log = self._log(patient_id)
            log.record_read(reader, " ".join(sorted(roles)), operation)
            try:
                self.registry.save(log)
                return
            except IntegrityError:
                if attempt == _ATTEMPTS - 1:
                    raise

    def accesses(self, patient_id: UUID) -> list[RecordRead]:
        """Every recorded read of the patient's record, oldest first."""
        try:
            log = self.registry.repository.get(PatientRecordAccess.create_id(patient_id))
        except AggregateNotFoundError:
            return []
        return list(log.reads)

    def _log(self, patient_id: UUID) -> PatientRecordAccess:
        try:
            return self.registry.repository.get(PatientRecordAccess.create_id(patient_id))
        except AggregateNotFoundError:
            return PatientRecordAccess(patient_id=patient_id)
