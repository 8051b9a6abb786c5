"""GDPR erasure end to end: book, note, cancel, ``clinic gdpr erase`` — then nothing readable remains.

Runs on SQLite files and on a real PostgreSQL schema, with the read models in a real Redis under
a fresh prefix. After the erasure it scans every byte the clinic stored (event tables or files,
key store, Redis views) and every log record for the patient's name, email, birth date, reasons
and note, then replays and audits the aggregates, and rebuilds the projection.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, date, datetime
from uuid import UUID

import pytest

from application.bootstrap import bootstrap, migrate
from application.clinic import Clinic
from application.settings import Settings
from infrastructure.personal_data.keys import KeyEncryptionKey
from infrastructure.read_models.redis_store import RedisViewStore
from interfaces.cli.main import main
from tests import services
from tests.e2e import leaks
from tests.integration.projections.conftest import delete_prefix

NAME, EMAIL, BIRTH_DATE = "Xylo Quintessa", "xylo.quintessa@unique.example", date(1931, 7, 19)
REASON, NOTE, CANCEL = "Zebra-kidney-ache-7731", "Quokka-note-5519", "Narwhal-cancel-2210"
SECRETS = [NAME, EMAIL, BIRTH_DATE.isoformat(), REASON, NOTE, CANCEL]
START = datetime(2027, 1, 4, 9, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def environment(request, tmp_path, monkeypatch):
    """``CLINIC_*`` for this test's own stores (a data dir or a schema) and Redis prefix."""
    services.require_redis()
    env = {"CLINIC_PERSISTENCE": request.param, "CLINIC_DATA_DIR": str(tmp_path / "data"),
           "CLINIC_DATA_KEK": KeyEncryptionKey.generate_text(), "CLINIC_REDIS_URL": services.redis_url(),
           "CLINIC_REDIS_PREFIX": f"test:gdpr:{uuid.uuid4().hex}:", "CLINIC_RUNNER_TICK_SECONDS": "0.05"}
    if request.param == "postgres":
        env |= {"POSTGRES_DBNAME": services.POSTGRES_DB, "POSTGRES_HOST": services.POSTGRES_HOST,
                "POSTGRES_PORT": str(services.POSTGRES_PORT), "POSTGRES_USER": services.POSTGRES_USER, "POSTGRES_PASSWORD": "",
                "POSTGRES_SCHEMA": request.getfixturevalue("postgres_schema"),
                "POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "2"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    views = RedisViewStore.from_url(env["CLINIC_REDIS_URL"], env["CLINIC_REDIS_PREFIX"])
    yield Settings.from_env(env)
    delete_prefix(views, views.prefix)
    views.close()


def test_after_erasure_nothing_readable_remains_and_audit_and_rebuild_show_erased(environment, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    # given: a patient who booked, got a clinical note, and cancelled
    clinic, patient_id, consultation_id = book_note_and_cancel(environment)
    try:
        # when: an operator erases the patient while the clinic runs
        assert main(["gdpr", "erase", str(patient_id), "--yes"]) == 0
        assert "erased patient" in capsys.readouterr().out
        # then: the running clinic's projection runner redacts the view
        wait_for_redacted_view(clinic, environment, consultation_id)
    finally:
        clinic.close()
    # then: nothing anywhere holds the data
    assert leaks_in_event_stores(environment) == []
    assert leaks_in_redis(environment) == []
    assert [r.getMessage() for r in caplog.records if any(s in r.getMessage() for s in SECRETS)] == []
    # then: audit replays both aggregates, at any version, with the fields erased
    patient = audit(capsys, "patient", patient_id)
    assert (patient["state"]["name"], patient["state"]["email"], patient["state"]["birth_date"]) == (
        "[erased]", "[erased]", None)
    assert [e["type"] for e in patient["events"]] == ["Patient.Registered", "Patient.PersonalDataErased"]
    assert patient["events"][1]["actor"].startswith("cli:") and patient["state"]["erased"] is True
    assert audit(capsys, "patient", patient_id, "--version", "1")["events"][0]["data"]["name"] == "[erased]"
    consultation = audit(capsys, "consultation", consultation_id)
    assert consultation["state"]["status"] == "CANCELLED"
    assert [e["data"].get("reason", e["data"].get("text")) for e in consultation["events"]
            if e["type"] in ("Consultation.Requested", "Consultation.NoteAdded",
                             "Consultation.CancelledByPatient")] == ["[erased]"] * 3
    assert audit(capsys, "consultation", consultation_id, "--version", "1")["state"]["reason"] == "[erased]"
    # then: a rebuild of the projection shows the erasure too, and still leaks nothing
    assert main(["projections", "rebuild", "consultation_detail"]) == 0
    assert served_detail(environment, consultation_id)["reason"] == "[erased]"
    assert leaks_in_redis(environment) == []
    # and: erasing again is a no-op; an unknown patient is an error
    assert main(["gdpr", "erase", str(patient_id), "--yes"]) == 0
    assert "already erased" in capsys.readouterr().out
    assert main(["gdpr", "erase", str(uuid.uuid4()), "--yes"]) == 1
    assert "not found" in capsys.readouterr().err


def book_note_and_cancel(settings: Settings) -> tuple[Clinic, UUID, UUID]:
    """Through the clinic's use cases, on a running clinic (runner and Redis projections); left running."""
    if settings.persistence == "postgres":
        migrate(settings)
    clinic = bootstrap(settings)
    try:
        patient_id = clinic.registry.register_patient(NAME, EMAIL, BIRTH_DATE, True)
        doctor_id = clinic.registry.register_doctor("Dr. Ines Prado", "gp")
        clinic.open_slots(doctor_id, [(START, 30)])
        consultation_id = clinic.book(patient_id, doctor_id, START, REASON).consultation_id
        clinic.wait_until_settled()
        assert clinic.consultations.consultation(consultation_id).status == "CONFIRMED"
        clinic.consultations.add_note(consultation_id, "doctor", NOTE)
        clinic.consultations.cancel(consultation_id, CANCEL, by_patient=True)
        clinic.wait_until_settled()
        assert served_detail(settings, consultation_id)["reason"] == REASON  # the view had it, in clear,
        assert leaks_in_redis(settings) != []  # and the scan finds it there
    except Exception:
        clinic.close()
        raise
    return clinic, patient_id, consultation_id


def wait_for_redacted_view(clinic: Clinic, settings: Settings, consultation_id: UUID) -> None:
    """Until the running clinic's projections applied the erasure the CLI recorded (10 s at most)."""
    deadline = time.monotonic() + 10
    while served_detail(settings, consultation_id).get("reason") != "[erased]":
        assert time.monotonic() < deadline, "the view was not redacted"
        clinic.runner.wait_until_idle(1.0)


def served_detail(settings: Settings, consultation_id: UUID) -> dict[str, str]:
    views = RedisViewStore.from_url(settings.redis_url, settings.redis_prefix)
    try:
        version = views.serving_version("consultation_detail")
        return views.get_fields("consultation_detail", version, f"consultation:{consultation_id}")
    finally:
        views.close()


def audit(capsys, kind: str, aggregate_id: UUID, *options: str) -> dict:
    capsys.readouterr()
    assert main(["audit", kind, str(aggregate_id), "--json", *options]) == 0
    return json.loads(capsys.readouterr().out)


def leaks_in_event_stores(settings: Settings) -> list[tuple[str, list[str]]]:
    return leaks.in_event_stores(settings, SECRETS)


def leaks_in_redis(settings: Settings) -> list[tuple[str, list[str]]]:
    return leaks.in_redis(settings.redis_url, settings.redis_prefix, SECRETS)
