"""Append-only, tamper-evident streams: the services cannot change an event, and an event edited or
deleted with SQL by someone who could (triggers off) is found."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from application.bootstrap import bootstrap, build_applications, migrate
from application.contexts import CONTEXTS
from infrastructure.event_chain import PostgresEventChain, link
from process_managers.booking_saga import saga_id_for
from tests.conftest import settings_for

START = datetime(2027, 1, 5, 9, tzinfo=UTC)


@pytest.fixture
def booked(tmp_path, request):
    """A PostgreSQL clinic (migrated) with a confirmed and a rejected booking; its settings."""
    settings = settings_for("postgres", tmp_path, request)
    migrate(settings)
    clinic = bootstrap(settings)
    try:
        from datetime import date

        patient = clinic.registry.register_patient("Ana", "ana@example.org", date(1990, 1, 1), True)
        doctor = clinic.registry.register_doctor("Dr. Rui", "gp")
        clinic.open_slots(doctor, [(START, 30)])
        confirmed = clinic.book(patient, doctor, START, "check-up").consultation_id
        clinic.book(patient, doctor, START + timedelta(hours=3), "no slot")
        clinic.wait_until_settled()
    finally:
        clinic.close()
    return settings, confirmed


@contextmanager
def chains(settings):
    """Every context's chain over the stores of ``settings``; their applications closed after."""
    apps = build_applications(settings, create_table=False)
    try:
        yield {name: PostgresEventChain.of(app) for name, app in apps.items()}
    finally:
        for app in apps.values():
            app.close()


def execute(chain, statement, *args):
    """``statement`` as someone who can get past the append-only triggers (a superuser) would run it."""
    with chain.datastore.transaction(commit=True) as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")  # triggers off: superusers only
        cursor.execute(statement.format(table=chain.table.as_string(None)), args)


@pytest.mark.parametrize("change", [
    "UPDATE {table} SET state = state || '\\x00'::bytea", "DELETE FROM {table}", "TRUNCATE {table}"])
def test_the_services_own_connection_cannot_update_delete_or_truncate_events(booked, change):
    from eventsourcing.persistence import ProgrammingError  # the library's wrapper of InsufficientPrivilege

    settings, _ = booked
    with chains(settings) as by_name:
        for chain in by_name.values():
            with pytest.raises(ProgrammingError, match="events are append-only"), \
                    chain.datastore.get_connection() as connection:  # the pool the service writes through
                connection.execute(change.format(table=chain.table.as_string(None)))
            assert not chain.verify().broken and chain.verify().events > 0


def test_untouched_streams_verify_and_an_edit_or_a_deletion_is_reported_at_its_version(booked):
    settings, consultation_id = booked
    with chains(settings) as by_name:
        # given every store verifies
        results = {name: chain.verify() for name, chain in by_name.items()}
        assert all(not r.broken and r.events > 0 for r in results.values()), results
        consultations = by_name["Consultations"]
        # when someone edits a stored event (its state) behind the application's back
        execute(consultations, "UPDATE {table} SET state = state || '\\x00'::bytea "
                               "WHERE originator_id = %s AND originator_version = 2", consultation_id)
        # then verification names the stream and the version
        [broken] = consultations.verify().broken
        assert (broken.originator_id, broken.version) == (consultation_id, 2)
        # and a deleted event breaks the chain where the stream resumes
        booking, saga = by_name["Booking"], saga_id_for(consultation_id)  # a saga of several events
        execute(booking, "DELETE FROM {table} WHERE originator_id = %s AND originator_version = 2", saga)
        [gap] = booking.verify(saga).broken
        assert (gap.version, gap.why) == (3, "version 2 is missing")


def test_the_trigger_and_the_python_check_compute_the_same_chain(booked):
    settings, consultation_id = booked
    with chains(settings) as by_name:
        rows = list(by_name["Consultations"]._rows(consultation_id))
        previous = None
        for row in rows:
            previous = link(previous, row["topic"], bytes(row["state"]), row["originator_version"])
            assert previous == bytes(row["chain"])



def test_clinic_audit_verify_reports_every_store_and_exits_1_at_a_broken_link(booked):
    from tests.e2e.test_processes import run_clinic

    settings, consultation_id = booked
    env = {"CLINIC_PERSISTENCE": "postgres", **settings.database}
    clean = run_clinic("audit", "verify", env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert {line.split()[0] for line in clean.stdout.splitlines()} == {context.name for context in CONTEXTS}
    with chains(settings) as by_name:
        execute(by_name["Consultations"], "UPDATE {table} SET topic = topic || ' ' WHERE originator_id = %s "
                                          "AND originator_version = 1", consultation_id)
    one = run_clinic("audit", "verify", "consultation", str(consultation_id), env=env)
    assert one.returncode == 1
    assert f"{consultation_id} at version 1: its hash does not match" in one.stdout
    refused = run_clinic("audit", "verify", "consultation", env=env)
    assert refused.returncode == 1 and "give a stream as KIND ID" in refused.stderr


def test_the_audit_trail_says_whether_its_stream_verifies(booked):
    from application.bootstrap import open_stores

    settings, consultation_id = booked
    clinic = open_stores(settings)
    try:
        assert clinic.auditor.trail("consultation", consultation_id).integrity == "verified"
        # a stored hash rewritten (the events still decode: the trail is shown, and says it does not verify)
        execute(PostgresEventChain.of(clinic.consultations), "UPDATE {table} SET chain = sha256('forged'::bytea) "
                "WHERE originator_id = %s AND originator_version = 2", consultation_id)
        assert clinic.auditor.trail("consultation", consultation_id).integrity == (
            "broken at version 2: its hash does not match its content and its predecessor's")
    finally:
        clinic.close()
