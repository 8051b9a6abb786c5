"""Least privilege in PostgreSQL, tried as a compromised service would: each context's role writes its
own events and nothing else, cannot change an event, cannot touch another context's tables or the
schema; the projection worker's role only reads."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import errors

from application.bootstrap import build_applications, database_roles_of, migrate
from application.contexts import SCHEDULING
from infrastructure.database_roles import RolesError, drop
from tests import services
from tests.conftest import settings_for

START = datetime(2027, 1, 5, 9, tzinfo=UTC)
DENIED = (errors.InsufficientPrivilege,)
"""PostgreSQL's ``42501``: a missing grant, or the append-only trigger."""


def admin() -> psycopg.Connection:
    return psycopg.connect(f"host={services.POSTGRES_HOST} port={services.POSTGRES_PORT} "
                           f"dbname={services.POSTGRES_DB} user={services.POSTGRES_USER}", autocommit=True)


@pytest.fixture
def roles(tmp_path, request):
    """A migrated schema with this test's roles; ``(settings, schema, role of each service)``; roles dropped after."""
    settings = settings_for("postgres", tmp_path, request)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    names = database_roles_of(prefix)
    try:
        migrate(settings, roles=prefix)
        yield settings, settings.database["POSTGRES_SCHEMA"], names
    finally:
        with admin() as connection, connection.cursor() as cursor:
            drop(cursor, names.values())


def connect_as(role: str, schema: str) -> psycopg.Connection:
    connection = psycopg.connect(f"host={services.POSTGRES_HOST} port={services.POSTGRES_PORT} "
                                 f"dbname={services.POSTGRES_DB} user={role}", autocommit=True)
    connection.execute(f'SET search_path TO "{schema}"')
    return connection


def as_role(settings, role: str):
    """``settings`` signing in as ``role``, as a service's Deployment does."""
    return dataclasses.replace(settings, database={**settings.database, "POSTGRES_USER": role})


def test_a_context_stores_and_reads_its_events_through_its_own_role(roles, tmp_path):
    """Scheduling reads no personal data: its role has no grant on the data keys, and it needs no KEK."""
    settings, _, names = roles
    settings = dataclasses.replace(as_role(settings, names["scheduling"]), data_dir=tmp_path / "scheduling")
    apps = build_applications(settings, create_table=False, contexts=[SCHEDULING])
    try:
        scheduling = apps[SCHEDULING.name]
        [slot_id] = scheduling.open_slots(uuid.uuid4(), [(START, 30)])
        assert scheduling.slot(slot_id).start == START
        assert not (tmp_path / "scheduling").exists()  # no development KEK made either
    finally:
        for app in apps.values():
            app.close()


@pytest.mark.parametrize("change", [
    "UPDATE scheduling_events SET topic = topic", "DELETE FROM scheduling_events", "TRUNCATE scheduling_events",
    "ALTER TABLE scheduling_events DISABLE TRIGGER clinic_append_only", "DROP TABLE scheduling_events",
    "CREATE TABLE forged (id int)",
])
def test_a_context_role_cannot_change_an_event_or_the_schema(roles, change):
    _, schema, names = roles
    with connect_as(names["scheduling"], schema) as connection:
        connection.execute("INSERT INTO scheduling_events (originator_id, originator_version, topic, state) "
                           "VALUES (gen_random_uuid(), 1, 't', '\\x00')")  # it may append
        with pytest.raises(DENIED):  # ALTER and DROP: "must be owner", 42501 too
            connection.execute(change)


@pytest.mark.parametrize("statement", [
    "SELECT * FROM registry_events", "SELECT * FROM booking_tracking",
    "INSERT INTO consultations_events (originator_id, originator_version, topic, state) "
    "VALUES (gen_random_uuid(), 1, 't', '\\x00')",
    "UPDATE clinic_subject_keys SET wrapped_key = NULL",
])
def test_a_context_role_cannot_touch_another_contexts_tables(roles, statement):
    _, schema, names = roles
    with connect_as(names["scheduling"], schema) as connection, pytest.raises(DENIED):
        connection.execute(statement)


def test_the_projection_worker_reads_every_context_and_writes_nothing(roles):
    _, schema, names = roles
    with connect_as(names["projections"], schema) as connection:
        for context in ("registry", "scheduling", "consultations", "booking"):
            connection.execute(f"SELECT count(*) FROM {context}_events").fetchone()
            for write in (f"INSERT INTO {context}_events (originator_id, originator_version, topic, state) "
                          "VALUES (gen_random_uuid(), 1, 't', '\\x00')", f"DELETE FROM {context}_tracking"):
                with pytest.raises(DENIED):
                    connection.execute(write)


def test_migrating_again_takes_back_a_privilege_granted_by_hand(roles):
    settings, schema, names = roles
    with admin() as connection:
        connection.execute(f'GRANT SELECT ON "{schema}".registry_events TO "{names["scheduling"]}"')
    migrate(settings, roles=names["scheduling"].removesuffix("_scheduling"))
    with connect_as(names["scheduling"], schema) as connection, pytest.raises(DENIED):
        connection.execute("SELECT * FROM registry_events")


def test_a_migration_that_may_not_create_the_roles_says_how_to_fix_it(tmp_path, request):
    owner, schema = f"t{uuid.uuid4().hex[:10]}_owner", f"t{uuid.uuid4().hex[:10]}"
    with admin() as connection:
        connection.execute(f'CREATE ROLE "{owner}" LOGIN')  # a database owner without CREATEROLE
        connection.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{owner}"')
    try:
        settings = settings_for("postgres", tmp_path, request)
        settings = dataclasses.replace(settings, database={**settings.database, "POSTGRES_USER": owner,
                                                           "POSTGRES_SCHEMA": schema})
        with pytest.raises(RolesError, match="create it first .*CREATEROLE"):
            migrate(settings, roles=f"t{uuid.uuid4().hex[:10]}")
    finally:
        with admin() as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
            connection.execute(f'DROP OWNED BY "{owner}"')
            connection.execute(f'DROP ROLE "{owner}"')


def test_a_follower_counts_its_own_deliveries_and_cannot_see_or_change_another_followers(roles):
    _, schema, names = roles
    with connect_as(names["booking"], schema) as booking:
        booking.execute("INSERT INTO delivery_attempts (follower, message_id, attempts) VALUES ('Booking', 'm1', 2)")
        with pytest.raises(DENIED):  # row-level security: "new row violates row-level security policy"
            booking.execute("INSERT INTO delivery_attempts (follower, message_id, attempts) "
                            "VALUES ('Scheduling', 'm1', 99)")
    with connect_as(names["scheduling"], schema) as scheduling:
        assert scheduling.execute("SELECT count(*) FROM delivery_attempts").fetchone()[0] == 0
        assert scheduling.execute("UPDATE delivery_attempts SET attempts = 99").rowcount == 0
        assert scheduling.execute("DELETE FROM delivery_attempts").rowcount == 0
    with admin() as owner:
        assert owner.execute(f'SELECT attempts FROM "{schema}".delivery_attempts').fetchall() == [(2,)]
