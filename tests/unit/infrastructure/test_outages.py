"""Outage or defect: real errors from real clients (a closed port, a missing table), classified and explained."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
import redis
from eventsourcing.application import Application
from eventsourcing.persistence import OperationalError

from infrastructure.outages import cause, explain, is_outage
from tests.private_servers import free_port


def raised(action) -> BaseException:
    with pytest.raises(Exception) as caught:
        action()
    return caught.value


def test_a_refused_connection_is_an_outage_and_says_so():
    port = free_port()  # nothing listens there
    for error in (raised(lambda: psycopg.connect(host="127.0.0.1", port=port, connect_timeout=1)),
                  raised(lambda: redis.Redis(port=port, socket_connect_timeout=1).ping())):
        assert is_outage(error)
        assert cause(error).startswith("connection refused")


def test_a_pool_that_gets_no_connection_is_an_outage_and_a_direct_attempt_names_why():
    port = free_port()
    env = {"PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_DBNAME": "postgres", "POSTGRES_HOST": "127.0.0.1",
           "POSTGRES_PORT": str(port), "POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": "",
           "POSTGRES_CONNECT_TIMEOUT": "1", "CREATE_TABLE": "n"}
    error = raised(lambda: Application(env=env))
    assert isinstance(error, OperationalError) and is_outage(error)
    assert cause(error).startswith("it did not answer in time")  # the pool alone hides the server's answer
    assert explain(error, env).startswith("connection refused")


def test_a_missing_table_is_no_outage_and_names_the_fix(tmp_path):
    database = sqlite3.connect(tmp_path / "empty.sqlite")
    error = raised(lambda: database.execute("SELECT * FROM stored_events"))
    assert not is_outage(error)
    assert "clinic db migrate" in cause(error)


def test_a_wrapped_outage_is_found_through_its_cause():
    try:
        try:
            raise ConnectionResetError("connection reset by peer")
        except ConnectionResetError as inner:
            raise RuntimeError("saving failed") from inner
    except RuntimeError as outer:
        assert is_outage(outer)
        assert cause(outer).startswith("the connection dropped")


def test_refused_credentials_are_no_outage():
    error = psycopg.OperationalError('connection failed: FATAL:  password authentication failed for user "x"')
    assert not is_outage(error)
    assert cause(error).startswith("the server refused our credentials")


def test_a_defect_is_no_outage():
    assert not is_outage(KeyError("slot"))
    assert not is_outage(ValueError("bad start"))


def test_every_query_the_library_retries_ten_times_is_tried_twice_by_our_postgres_recorders():
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresProcessRecorder, PostgresTrackingRecorder

    from infrastructure.event_store import (
        _RETRIED,
        PostgresBatchRecorder,
        PostgresPositionRecorder,
        PostgresStoreRecorder,
    )

    pairs = [(PostgresStoreRecorder, PostgresApplicationRecorder), (PostgresPositionRecorder, PostgresTrackingRecorder),
             (PostgresBatchRecorder, PostgresProcessRecorder)]
    for ours, library in pairs:
        retried = [name for name in _RETRIED if hasattr(getattr(library, name, None), "__wrapped__")]
        assert retried, library  # a library upgrade that renamed them would leave ours retrying ten times
        for name in retried:
            assert getattr(ours, name) is not getattr(library, name), (ours, name)
    assert {name for _, library in pairs for name in _RETRIED
            if hasattr(getattr(library, name, None), "__wrapped__")} == set(_RETRIED)


def test_a_pool_refused_by_the_server_for_an_unknown_role_is_not_ready_not_an_outage_to_wait_for():
    from application.bootstrap import StoreNotReadyError, store_error
    from tests import services

    services.require_postgres()
    env = {"PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_DBNAME": services.POSTGRES_DB,
           "POSTGRES_HOST": services.POSTGRES_HOST, "POSTGRES_PORT": str(services.POSTGRES_PORT),
           "POSTGRES_USER": "no_such_role_here", "POSTGRES_PASSWORD": "", "POSTGRES_CONNECT_TIMEOUT": "1",
           "CREATE_TABLE": "n"}
    error = store_error("the Registry event store", raised(lambda: Application(env=env)), env)
    assert isinstance(error, StoreNotReadyError)
    assert "the server has no such role (user)" in str(error)
