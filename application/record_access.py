"""Reads of a patient's record, recorded before the record is returned (GDPR art. 30/15)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application.registry import RegistryApplication
from application.views import PatientView
from domain.record_access import PatientRecordAccess, RecordRead

_ATTEMPTS = 10
"""Another process appending to the same patient's log meanwhile is a version conflict: tried again."""
_BACKOFF_SECONDS = 0.005
"""The first pause before trying again after a conflict; it doubles, with jitter."""


@dataclass
class _Read:
    reader: str
    roles: str
    operation: str
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class PatientRecords:
    """The patient record use cases that must leave an access trail, over the registry's store."""

    def __init__(self, registry: RegistryApplication) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._waiting: dict[UUID, list[_Read]] = {}
        self._writing: set[UUID] = set()

    def read(self, patient_id: UUID, reader: str, roles: Iterable[str], operation: str) -> PatientView:
        """The patient's record; the read is recorded first (no trail, no data)."""
        view = self.registry.patient(patient_id)
        self.record_read(patient_id, reader, roles, operation)
        return view

    def record_read(self, patient_id: UUID, reader: str, roles: Iterable[str], operation: str) -> None:
        """Append one read to the patient's access log (created on the first read); returns once it is saved.

        Concurrent reads of one patient do not contend for its stream: the first to come writes, and
        the reads arriving meanwhile are saved together, in one transaction, by that same writer."""
        read = _Read(reader, " ".join(sorted(roles)), operation)
        with self._lock:
            self._waiting.setdefault(patient_id, []).append(read)
            writes = patient_id not in self._writing
            self._writing.add(patient_id)
        if writes:
            self._write_while_waiting(patient_id)
        read.done.wait()
        if read.error is not None:
            raise read.error

    def _write_while_waiting(self, patient_id: UUID) -> None:
        while True:
            with self._lock:
                batch = self._waiting.pop(patient_id, [])
                if not batch:
                    self._writing.discard(patient_id)
                    return
            error: BaseException | None = None
            try:
                self._append(patient_id, batch)
            except Exception as failed:  # noqa: BLE001 - handed to each read of the batch, raised there
                error = failed
            for read in batch:
                read.error = error
                read.done.set()

    def _append(self, patient_id: UUID, reads: list[_Read]) -> None:
        pause = _BACKOFF_SECONDS
        for attempt in range(_ATTEMPTS):
            log = self._log(patient_id)
            for read in reads:
                log.record_read(read.reader, read.roles, read.operation)
            try:
                self.registry.save(log)
                return
            except IntegrityError:
                if attempt == _ATTEMPTS - 1:
                    raise
                time.sleep(pause * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not secrecy
                pause *= 2

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
