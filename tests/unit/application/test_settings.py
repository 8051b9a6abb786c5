"""Settings are read from CLINIC_* variables, validated at start, and turned into store variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from application.settings import Settings, SettingsError


def test_defaults_are_the_embedded_sqlite_stores():
    settings = Settings.from_env({})
    env = settings.eventsourcing_env("Booking")
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"
    assert env["SQLITE_DBNAME"] == str(Path(".clinic-data") / "booking.sqlite")
    assert env["CREATE_TABLE"] == "y"


@pytest.mark.parametrize("env, message", [
    ({"CLINIC_PERSISTENCE": "oracle"}, "CLINIC_PERSISTENCE must be one of"),
    ({"CLINIC_PERSISTENCE": "sqlalchemy"}, "needs SQLALCHEMY_URL"),
    ({"CLINIC_PERSISTENCE": "postgres"}, "needs POSTGRES_DBNAME"),
    ({"CLINIC_SAGA_DEADLINE_SECONDS": "soon"}, "CLINIC_SAGA_DEADLINE_SECONDS must be a number"),
    ({"CLINIC_RUNNER_TICK_SECONDS": "0"}, "CLINIC_RUNNER_TICK_SECONDS must be positive"),
    ({"CLINIC_AMQP_BINDINGS": "some"}, "CLINIC_AMQP_BINDINGS must be one of handled, all"),
])
def test_bad_settings_are_refused_naming_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_queues_bind_only_the_handled_events_unless_told_otherwise():
    assert Settings.from_env({}).amqp_bindings == "handled"
    assert Settings.from_env({"CLINIC_AMQP_BINDINGS": "ALL"}).amqp_bindings == "all"


def test_servers_never_create_tables():
    settings = Settings.from_env({"CLINIC_PERSISTENCE": "postgres", "POSTGRES_DBNAME": "clinic"})
    assert settings.eventsourcing_env("Registry")["CREATE_TABLE"] == "n"
    assert settings.eventsourcing_env("Registry", create_table=True)["CREATE_TABLE"] == "y"


def test_sqlalchemy_schema_is_also_put_on_the_search_path():
    settings = Settings.from_env({"CLINIC_PERSISTENCE": "sqlalchemy", "SQLALCHEMY_SCHEMA": "clinic",
                                  "SQLALCHEMY_URL": "postgresql+psycopg://u@h/db"})
    env = settings.eventsourcing_env("Booking")
    assert env["SQLALCHEMY_URL"] == "postgresql+psycopg://u@h/db?options=-csearch_path%3Dclinic"
    assert env["SQLALCHEMY_SCHEMA"] == "clinic"
