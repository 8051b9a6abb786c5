"""PostgreSQL over TLS, against a real server that speaks it: a private cluster with ``ssl=on`` that
accepts TLS connections only, from clients presenting a certificate of the development CA.

eventsourcing.postgres passes no ssl* options to psycopg, but libpq reads ``PGSSLMODE``,
``PGSSLROOTCERT``, ``PGSSLCERT`` and ``PGSSLKEY`` from the environment on every connect, so these are
what a service sets (docs/service-identity-and-tls.md). With ``verify-full`` the event store checks the
server's certificate and host name, and refuses a server presenting a certificate of another CA.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest

from application.bootstrap import StoreNotReadyError, StoreUnavailableError, build_applications, migrate
from application.contexts import SCHEDULING
from application.settings import Settings
from infrastructure.tls import Pki
from interfaces.local_deployment.private_servers import PrivatePostgres, ServerTls
from tests.private_servers import free_port, installed, ours_and_foreign, scratch

START = datetime(2027, 1, 5, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def pkis(tmp_path_factory) -> tuple[Pki, Pki]:
    """The development CA's certificates, and another CA's (a foreign server)."""
    return ours_and_foreign(tmp_path_factory.mktemp("pg-tls"), ("postgres", "scheduling"))


@pytest.fixture(scope="module")
def server(pkis) -> Iterator[PrivatePostgres]:
    ours, _ = pkis
    with scratch("clinic-pg-tls-") as root:
        postgres = installed(lambda: PrivatePostgres(root, free_port(), tls=ServerTls.of(ours, "postgres")))
        postgres.init()
        postgres.start()
        try:
            yield postgres
        finally:
            postgres.stop()


@pytest.fixture
def verify_full(pkis, monkeypatch) -> Pki:
    """A service's TLS settings: verify the server fully against our CA, present the scheduling pair."""
    ours, _ = pkis
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    monkeypatch.setenv("PGSSLROOTCERT", str(ours.ca_file))
    monkeypatch.setenv("PGSSLCERT", str(ours.cert_file("scheduling")))
    monkeypatch.setenv("PGSSLKEY", str(ours.key_file("scheduling")))
    return ours


def settings_of(server: PrivatePostgres, tmp_path: Path) -> Settings:
    schema = f"tls_{uuid4().hex[:8]}"
    with psycopg.connect(host="127.0.0.1", port=server.port, dbname="postgres", user="postgres") as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    database = {**server.env, "POSTGRES_SCHEMA": schema, "POSTGRES_POOL_SIZE": "1", "POSTGRES_CONNECT_TIMEOUT": "2"}
    return Settings(persistence="postgres", create_tables=False, database=database, data_dir=tmp_path)


def test_a_service_stores_its_events_over_verified_tls_with_its_client_certificate(server, verify_full, tmp_path):
    settings = settings_of(server, tmp_path)
    migrate(settings)
    apps = build_applications(settings, create_table=False, contexts=[SCHEDULING])
    scheduling = apps[SCHEDULING.name]
    try:
        [slot_id] = scheduling.open_slots(uuid4(), [(START, 30)])
        assert scheduling.slot(slot_id).start == START
        with scheduling.recorder.datastore.get_connection() as connection:  # the store's own pool
            seen = connection.execute("SELECT ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert seen["ssl"] and "CN=scheduling" in seen["client_dn"]
    finally:
        scheduling.close()


def test_a_server_presenting_another_cas_certificate_is_refused(server, verify_full, pkis, tmp_path):
    _, foreign = pkis
    settings = settings_of(server, tmp_path)
    server.present(ServerTls.of(foreign, "postgres"))
    try:
        with pytest.raises((StoreNotReadyError, StoreUnavailableError), match="certificate verify failed"):
            build_applications(settings, create_table=False, contexts=[SCHEDULING])
    finally:
        server.present(ServerTls.of(verify_full, "postgres"))


def test_a_client_without_a_certificate_of_our_ca_is_refused(server, verify_full, monkeypatch):
    monkeypatch.setenv("PGSSLCERT", "/nonexistent/client.pem")  # libpq then presents no certificate
    with pytest.raises(psycopg.OperationalError, match="certificate"):
        psycopg.connect(host="127.0.0.1", port=server.port, dbname="postgres", user="postgres", connect_timeout=2)


def test_a_client_that_does_not_ask_for_tls_is_refused(server, monkeypatch):
    monkeypatch.setenv("PGSSLMODE", "disable")
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(host="127.0.0.1", port=server.port, dbname="postgres", user="postgres", connect_timeout=2)
