"""The crypto-shredding mapper: sealed in the store, opened on the way back, erased once the key is gone."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from uuid import uuid4

import pytest
from eventsourcing.persistence import JSONTranscoder, Mapper, MapperDeserialisationError, StoredEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from application.common import ClinicApplication
from domain.consultation import Consultation
from domain.patient import Patient
from infrastructure.personal_data.keys import (
    DataKeyMissingError,
    KeyEncryptionKey,
    MemoryKeyStore,
    SubjectKeys,
    WrongKekError,
)
from infrastructure.personal_data.mapper import DataSubjectUnknownError, PersonalDataMapper
from process_managers.base import register_clinic_transcodings

texts = st.text(min_size=1, max_size=200).map(lambda text: "PD-" + text)  # "-" is not in base64: findable
dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2025, 12, 31))  # not the events' own day
START = datetime(2027, 1, 4, 9, tzinfo=UTC)


def transcoder() -> JSONTranscoder:
    made = JSONTranscoder()
    ClinicApplication.register_transcodings(ClinicApplication.__new__(ClinicApplication), made)
    register_clinic_transcodings(made)
    return made


def new_keys(store: MemoryKeyStore | None = None, kek: KeyEncryptionKey | None = None) -> SubjectKeys:
    return SubjectKeys(store or MemoryKeyStore(), kek or KeyEncryptionKey.from_text(KeyEncryptionKey.generate_text()))


def registered(name: str, email: str, birth_date: date) -> Patient.Registered:
    patient = Patient(name=name, email=email, birth_date=birth_date, consent=True)
    return patient.collect_events()[0]


@settings(max_examples=60, deadline=None)
@given(name=texts, email=texts, birth_date=dates)
def test_a_registration_round_trips_and_stores_no_personal_field_in_clear(name, email, birth_date):
    # given
    mapper, event = PersonalDataMapper(transcoder(), new_keys()), registered(name, email, birth_date)
    # when
    stored = mapper.to_stored_event(event)
    # then
    state = json.loads(stored.state)
    assert {state[f]["_type_"] for f in ("name", "email", "birth_date")} == {"sealed_v1"}
    assert state["consent"] is True
    for value in (name, email):
        assert json.dumps(value, ensure_ascii=False)[1:-1].encode() not in stored.state
    assert birth_date.isoformat().encode() not in stored.state
    assert vars(mapper.to_domain_event(stored)) == vars(event)


@settings(max_examples=60, deadline=None)
@given(name=texts, email=texts, birth_date=dates)
def test_once_the_subject_is_erased_every_personal_field_reads_erased(name, email, birth_date):
    # given
    keys = new_keys()
    mapper, event = PersonalDataMapper(transcoder(), keys), registered(name, email, birth_date)
    stored = mapper.to_stored_event(event)
    # when
    keys.erase(str(event.originator_id))
    # then
    loaded = PersonalDataMapper(transcoder(), keys).to_domain_event(stored)
    assert (loaded.name, loaded.email, loaded.birth_date, loaded.consent) == ("[erased]", "[erased]", None, True)
    assert loaded.originator_id == event.originator_id and loaded.timestamp == event.timestamp


@settings(max_examples=40, deadline=None)
@given(reason=texts, note=texts)
def test_later_events_of_a_consultation_are_sealed_for_the_patient_named_by_its_request(reason, note):
    # given
    keys, patient_id = new_keys(), uuid4()
    mapper = PersonalDataMapper(transcoder(), keys)
    consultation = Consultation(patient_id=patient_id, doctor_id=uuid4(), start=START, reason=reason)
    consultation.confirm()
    consultation.add_note("dr", note)
    consultation.cancel_by_patient(reason)
    events = consultation.collect_events()
    # when
    stored = [mapper.to_stored_event(e) for e in events]
    # then
    opened = [mapper.to_domain_event(s) for s in stored]
    assert [vars(e) for e in opened] == [vars(e) for e in events]
    assert not any(text.encode() in s.state for s in stored for text in (reason, note))
    assert [json.loads(s.state).get("reason", {}).get("_data_", {}).get("s") for s in stored] == [
        str(patient_id), None, None, str(patient_id)]
    keys.erase(str(patient_id))
    erased = [PersonalDataMapper(transcoder(), keys).to_domain_event(s) for s in stored]
    assert (erased[0].reason, erased[2].text, erased[3].reason) == ("[erased]",) * 3


def test_events_stored_in_plain_text_before_still_load_and_link_their_subject():
    # given: a request stored by the library's own mapper
    keys, patient_id = new_keys(), uuid4()
    consultation = Consultation(patient_id=patient_id, doctor_id=uuid4(), start=START, reason="old reason")
    [requested] = consultation.collect_events()
    plain = Mapper(transcoder()).to_stored_event(requested)
    # when
    loaded = PersonalDataMapper(transcoder(), keys).to_domain_event(plain)
    # then
    assert loaded.reason == "old reason"
    assert keys.subject_of(str(consultation.id)) == str(patient_id)


def test_an_erased_subjects_new_events_store_the_marker_not_the_data():
    keys, patient_id = new_keys(), uuid4()
    keys.erase(str(patient_id))
    consultation = Consultation(patient_id=patient_id, doctor_id=uuid4(), start=START, reason="after erasure")
    stored = PersonalDataMapper(transcoder(), keys).to_stored_event(consultation.collect_events()[0])
    assert b"after erasure" not in stored.state and json.loads(stored.state)["reason"] == "[erased]"


def test_an_envelope_moved_to_another_event_does_not_open():
    mapper = PersonalDataMapper(transcoder(), new_keys())
    stored = mapper.to_stored_event(registered("Ana", "ana@example.org", date(1990, 1, 1)))
    moved = StoredEvent(uuid4(), stored.originator_version, stored.topic, stored.state)
    with pytest.raises(MapperDeserialisationError, match="does not open"):
        mapper.to_domain_event(moved)


def test_a_key_store_without_the_subject_fails_loudly_instead_of_reading_erased():
    stored = PersonalDataMapper(transcoder(), new_keys()).to_stored_event(
        registered("Ana", "ana@example.org", date(1990, 1, 1)))
    with pytest.raises(DataKeyMissingError):
        PersonalDataMapper(transcoder(), new_keys()).to_domain_event(stored)


def test_another_kek_cannot_unwrap_the_data_keys():
    store = MemoryKeyStore()
    stored = PersonalDataMapper(transcoder(), new_keys(store)).to_stored_event(
        registered("Ana", "ana@example.org", date(1990, 1, 1)))
    with pytest.raises(WrongKekError, match="CLINIC_DATA_KEK"):
        PersonalDataMapper(transcoder(), new_keys(store)).to_domain_event(stored)


def test_a_note_on_an_aggregate_with_no_known_subject_is_refused():
    consultation = Consultation(patient_id=uuid4(), doctor_id=uuid4(), start=START, reason="r")
    consultation.confirm()
    consultation.add_note("dr", "text")
    note = consultation.collect_events()[-1]
    with pytest.raises(DataSubjectUnknownError):
        PersonalDataMapper(transcoder(), new_keys()).to_stored_event(note)


def test_a_cached_key_is_dropped_after_its_time():
    now = [0.0]
    keys = SubjectKeys(MemoryKeyStore(), KeyEncryptionKey.from_text(KeyEncryptionKey.generate_text()),
                       cache_seconds=5, clock=lambda: now[0])
    other_process = SubjectKeys(keys.store, keys.kek)
    assert keys.key_for_writing("s") is not None
    other_process.erase("s")
    assert keys.key_for_reading("s") is not None  # still cached here
    now[0] = 5.1
    assert keys.key_for_reading("s") is None


def test_the_mapper_tells_an_event_stored_in_plain_text_from_a_sealed_one():
    keys, patient = new_keys(), Patient(name="Old", email="old@example.org", birth_date=date(1950, 1, 1),
                                        consent=True)
    [registered] = patient.collect_events()
    mapper = PersonalDataMapper(transcoder(), keys)
    assert mapper.stored_in_plain_text(Mapper(transcoder()).to_stored_event(registered))
    assert not mapper.stored_in_plain_text(mapper.to_stored_event(registered))
    patient.withdraw_consent()
    [withdrawn] = patient.collect_events()  # no personal fields: never "in plain text"
    assert not mapper.stored_in_plain_text(Mapper(transcoder()).to_stored_event(withdrawn))
