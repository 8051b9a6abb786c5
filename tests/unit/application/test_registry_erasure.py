"""RegistryApplication.erase_patient: key first, then the event; a crash in between is finished by a rerun."""

from __future__ import annotations

from datetime import date
from uuid import uuid4

import pytest

from application.bootstrap import build_applications
from application.registry import RegistryApplication
from application.settings import Settings
from domain.base import NotFoundError
from domain.patient import Patient


@pytest.fixture
def registry():
    apps = build_applications(Settings(persistence="memory"))
    yield apps[RegistryApplication.name]
    for app in apps.values():
        app.close()


def register(registry) -> object:
    return registry.register_patient("Ana Silva", "ana@example.org", date(1988, 3, 14), True)


def test_erasing_destroys_the_key_and_records_the_event_once(registry):
    patient_id = register(registry)
    assert registry.erase_patient(patient_id) is True
    assert registry.erase_patient(patient_id) is False
    events = list(registry.events.get(patient_id))
    assert [type(e) for e in events] == [Patient.Registered, Patient.PersonalDataErased]
    assert registry.patient(patient_id).name == "[erased]" and registry.patient_erased(patient_id)
    assert registry.booking_eligibility(patient_id, uuid4()).reason is not None
    assert registry.erased_patients() == [patient_id]


def test_a_crash_after_the_key_went_is_finished_by_running_it_again(registry):
    patient_id = register(registry)
    registry.mapper.keys.erase(str(patient_id))  # the key went, then the process died
    assert registry.patient(patient_id).name == "[erased]" and not registry.patient_erased(patient_id)
    assert registry.erase_patient(patient_id) is True
    assert registry.patient_erased(patient_id)


def test_a_key_restored_from_a_backup_is_destroyed_again(registry):
    patient_id = register(registry)
    store, record = registry.mapper.keys.store, None
    record = store.record(str(patient_id))
    registry.erase_patient(patient_id)
    store._records[str(patient_id)] = record  # the key store restored from last night's backup
    registry.mapper.keys._erased.clear()
    assert registry.patient(patient_id).name == "[erased]"  # the event history still says erased
    assert registry.erase_patient(patient_id) is True  # and erasing again shreds the restored key
    assert store.record(str(patient_id)).erased


def test_an_unknown_patient_cannot_be_erased(registry):
    with pytest.raises(NotFoundError):
        registry.erase_patient(uuid4())


def test_events_stored_before_crypto_shredding_are_counted_as_still_readable(registry):
    # given a patient registered before the sealing mapper existed (stored by the library's own mapper)
    from eventsourcing.persistence import Mapper

    legacy = Patient(name="Old Timer", email="old@example.org", birth_date=date(1950, 1, 1), consent=True)
    [registered] = legacy.collect_events()
    registry.recorder.insert_events([Mapper(registry.mapper.transcoder).to_stored_event(registered)])
    # when both are erased
    sealed = register(registry)
    registry.erase_patient(legacy.id)
    registry.erase_patient(sealed)
    # then only the legacy patient's registration is still in plain text, and says so
    assert registry.events_in_plain_text(legacy.id) == 1
    assert registry.events_in_plain_text(sealed) == 0
