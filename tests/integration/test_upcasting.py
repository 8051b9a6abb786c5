"""Old events stay readable: a version-1 ``Patient.Registered`` (no consent) read from a real store."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from application.registry import RegistryApplication
from domain.patient import Patient
from tests.conftest import settings_for

BIRTH_DATE = date(1971, 3, 14)


def registry_on(backend: str, tmp_path, request) -> RegistryApplication:
    """A registry application on its own fresh store (sqlite file or postgres schema)."""
    settings = settings_for(backend, tmp_path, request)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = RegistryApplication(env=settings.eventsourcing_env(RegistryApplication.name, create_table=True))
    request.addfinalizer(app.close)
    return app


def stored_state(app: RegistryApplication, stored: StoredEvent) -> dict[str, Any]:
    return app.mapper.transcoder.decode(stored.state)


def given_a_version_1_registration(app: RegistryApplication) -> UUID:
    """Record Patient.Registered as version 1 wrote it: no consent, no class_version."""
    patient = Patient(name="Maria", email="maria@example.org", birth_date=BIRTH_DATE, consent=True)
    stored = app.mapper.to_stored_event(patient.collect_events()[0])
    state = stored_state(app, stored)
    del state["consent"], state["class_version"]
    v1 = StoredEvent(originator_id=stored.originator_id, originator_version=stored.originator_version,
                     topic=stored.topic, state=app.mapper.transcoder.encode(state))
    app.recorder.insert_events([v1])
    return patient.id


pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"])


def test_the_store_holds_the_registration_without_consent(backend, tmp_path, request):
    # Given a version-1 registration written to the store
    app = registry_on(backend, tmp_path, request)
    patient_id = given_a_version_1_registration(app)
    # When the raw stored event is read back
    [stored] = app.recorder.select_events(patient_id)
    # Then it really is version 1: no consent and no class version
    state = stored_state(app, stored)
    assert "consent" not in state
    assert "class_version" not in state
    assert stored.topic.endswith("Patient.Registered")


def test_a_version_1_registration_is_read_as_not_consented_with_its_data_intact(backend, tmp_path, request):
    # Given a version-1 registration in the store
    app = registry_on(backend, tmp_path, request)
    patient_id = given_a_version_1_registration(app)
    # When the patient is loaded from the store by the current code
    patient = app.repository.get(patient_id)
    # Then consent is upcast to False and every other field is kept
    assert patient.consent is False
    assert not patient.may_book
    assert (patient.name, patient.email, patient.birth_date) == ("Maria", "maria@example.org", BIRTH_DATE)
    assert patient.version == 1


def test_a_version_1_registration_reads_the_same_after_a_restart(backend, tmp_path, request):
    # Given a version-1 registration written by one application
    writer = registry_on(backend, tmp_path, request)
    patient_id = given_a_version_1_registration(writer)
    # When a new application on the same store reads it
    reader = registry_on(backend, tmp_path, request)
    view = reader.patient(patient_id)
    # Then it sees the upcast patient
    assert (view.name, view.email, view.birth_date, view.consent) == (
        "Maria", "maria@example.org", BIRTH_DATE, False)


def test_an_upcast_patient_can_give_consent_and_then_book(backend, tmp_path, request):
    # Given a patient registered under version 1
    app = registry_on(backend, tmp_path, request)
    patient_id = given_a_version_1_registration(app)
    # When they give consent and the new event is saved after the old one
    patient = app.repository.get(patient_id)
    patient.give_consent()
    app.save(patient)
    # Then the patient reads as consenting and may book
    assert app.repository.get(patient_id).consent is True
    assert app.patient(patient_id).consent is True


def test_a_current_registration_keeps_its_consent(backend, tmp_path, request):
    # Given a registration written by the current code, consent given
    app = registry_on(backend, tmp_path, request)
    patient_id = app.register_patient("Rui", "rui@example.org", BIRTH_DATE, consent=True)
    # When it is read back / Then consent is as given and the stored event says version 2
    assert app.repository.get(patient_id).consent is True
    [stored] = app.recorder.select_events(patient_id)
    assert stored_state(app, stored)["class_version"] == 2
