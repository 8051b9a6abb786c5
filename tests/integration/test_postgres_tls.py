"""PostgreSQL over TLS: eventsourcing.postgres passes no ssl* options to psycopg, but libpq reads
``PGSSLMODE``, ``PGSSLROOTCERT``, ``PGSSLCERT`` and ``PGSSLKEY`` from the environment on every
connect. These tests prove the event stores honour them, against the shared (non-TLS) server:
``require`` must fail to connect, the same settings with ``disable`` must work.
"""

from __future__ import annotations

import psycopg
import pytest

from application.registry import RegistryApplication
from application.settings import Settings
from tests import services


def registry_on_postgres(schema: str) -> RegistryApplication:
    database = {"POSTGRES_DBNAME": services.POSTGRES_DB, "POSTGRES_HOST": services.POSTGRES_HOST,
                "POSTGRES_PORT": str(services.POSTGRES_PORT), "POSTGRES_USER": services.POSTGRES_USER,
                "POSTGRES_PASSWORD": "", "POSTGRES_SCHEMA": schema, "POSTGRES_CONNECT_TIMEOUT": "2",
                "POSTGRES_POOL_SIZE": "1"}
    settings = Settings(persistence="postgres", create_tables=True, database=database)
    return RegistryApplication(env=settings.eventsourcing_env(RegistryApplication.name))


def server_has_tls() -> bool:
    dsn = (f"host={services.POSTGRES_HOST} port={services.POSTGRES_PORT} dbname={services.POSTGRES_DB} "
           f"user={services.POSTGRES_USER} sslmode=disable")
    with psycopg.connect(dsn) as conn:
        return conn.execute("SHOW ssl").fetchone()[0] == "on"


def test_pgsslmode_require_is_applied_to_the_event_store(postgres_schema, monkeypatch):
    if server_has_tls():
        pytest.skip("this server speaks TLS: `require` would connect, so it proves nothing here")
    monkeypatch.setenv("PGSSLMODE", "require")
    with pytest.raises(Exception, match="couldn't get a connection"):  # eventsourcing's OperationalError
        registry_on_postgres(postgres_schema)
    # why: the pool hides libpq's reason; the same parameters, connected directly, show it
    with pytest.raises(psycopg.OperationalError, match="server does not support SSL, but SSL was required"):
        psycopg.connect(host=services.POSTGRES_HOST, port=services.POSTGRES_PORT, dbname=services.POSTGRES_DB,
                        user=services.POSTGRES_USER, password="", connect_timeout=2)


def test_the_same_store_connects_with_pgsslmode_disable(postgres_schema, monkeypatch):
    monkeypatch.setenv("PGSSLMODE", "disable")
    registry = registry_on_postgres(postgres_schema)
    try:
        assert registry.recorder.max_notification_id() in (None, 0)
    finally:
        registry.close()
