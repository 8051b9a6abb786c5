"""The subject key store in PostgreSQL: the events' database, shared by every service.

Tables ``clinic_subject_keys`` and ``clinic_aggregate_subjects`` (in ``POSTGRES_SCHEMA`` if
set) are created by ``clinic db migrate``. One autocommit connection behind a lock: the
mapper caches keys, so the store sees few queries; a dropped connection is reopened once.
An erased key's old row version stays in the table file until VACUUM reclaims it (see
docs/gdpr.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError
from psycopg import sql
from psycopg.conninfo import make_conninfo

from infrastructure.personal_data.keys import KeyRecord
from infrastructure.resilience import Backoff

T = TypeVar("T")
log = logging.getLogger(__name__)
ERASURES = "clinic_subject_erased"
"""The ``NOTIFY`` channel an erasure is told on (payload: the subject id); every process ``LISTEN``s."""
WAKE_SECONDS = 1.0
"""How often the listening thread wakes to see whether it must stop."""
CONNECT_SECONDS = 2
"""How long opening the key store's connection may take before the server counts as out."""


class PostgresKeyStore:
    """A ``SubjectKeyStore`` over PostgreSQL (``CLINIC_PERSISTENCE=postgres``)."""

    def __init__(self, conninfo: str, schema: str | None = None) -> None:
        self.conninfo = conninfo
        prefix = [schema] if schema else []
        self.keys = sql.Identifier(*prefix, "clinic_subject_keys")
        self.links = sql.Identifier(*prefix, "clinic_aggregate_subjects")
        self._lock = threading.Lock()
        self._connection: psycopg.Connection[Any] | None = None
        self.hearing_erasures = threading.Event()
        """Set while ``watch_erasures`` listens (cleared while it reconnects)."""

    @classmethod
    def for_database(cls, database: dict[str, str] | Any) -> PostgresKeyStore:
        """Beside the events of the library's ``POSTGRES_*`` settings (``CLINIC_PERSISTENCE=postgres``)."""
        names = {"POSTGRES_DBNAME": "dbname", "POSTGRES_HOST": "host", "POSTGRES_PORT": "port",
                 "POSTGRES_USER": "user", "POSTGRES_PASSWORD": "password"}
        conninfo = make_conninfo(**{kw: database[var] for var, kw in names.items() if database.get(var)})
        return cls(conninfo, database.get("POSTGRES_SCHEMA"))

    @classmethod
    def for_sqlalchemy_url(cls, url: str, schema: str | None = None) -> PostgresKeyStore:
        """Beside the events of ``postgresql+psycopg://…`` (SQLAlchemy's URL; libpq reads ``postgresql://…``)."""
        scheme, rest = url.split("://", 1)
        return cls(f"postgresql://{rest}" if scheme.startswith("postgresql") else url, schema)

    def create_tables(self) -> None:
        """Create the tables if missing (run by ``clinic db migrate``, not by servers)."""
        self._run(lambda c: [c.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (subject_id TEXT PRIMARY KEY, kek_id TEXT, wrapped_key BYTEA, "
            "created_at TIMESTAMPTZ NOT NULL, erased_at TIMESTAMPTZ)").format(self.keys)),
            c.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (aggregate_id TEXT PRIMARY KEY, "
                              "subject_id TEXT NOT NULL)").format(self.links))])

    def add_key(self, subject_id: str, kek_id: str, wrapped_key: bytes, now: datetime) -> None:
        """Store the subject's first key unless they have a row."""
        self._run(lambda c: c.execute(sql.SQL(
            "INSERT INTO {} (subject_id, kek_id, wrapped_key, created_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (subject_id) DO NOTHING").format(self.keys), (subject_id, kek_id, wrapped_key, now)))

    def record(self, subject_id: str) -> KeyRecord | None:
        """The subject's row, or ``None``."""
        row = self._run(lambda c: c.execute(sql.SQL(
            "SELECT kek_id, wrapped_key, erased_at FROM {} WHERE subject_id = %s").format(self.keys),
            (subject_id,)).fetchone())
        return None if row is None else KeyRecord(row[0], bytes(row[1]) if row[1] is not None else None, row[2])

    def erase(self, subject_id: str, now: datetime) -> bool:
        """Overwrite the subject's key with a tombstone and tell every process (``ERASURES``) in the same
        transaction; ``False`` if already erased."""
        def erase_and_tell(connection: psycopg.Connection[Any]) -> int:
            with connection.transaction():
                cursor = connection.execute(sql.SQL(
                    "INSERT INTO {0} (subject_id, kek_id, wrapped_key, created_at, erased_at) "
                    "VALUES (%s, NULL, NULL, %s, %s) ON CONFLICT (subject_id) DO UPDATE SET kek_id = NULL, "
                    "wrapped_key = NULL, erased_at = EXCLUDED.erased_at WHERE {0}.erased_at IS NULL").format(self.keys),
                    (subject_id, now, now))
                connection.execute("SELECT pg_notify(%s, %s)", (ERASURES, subject_id))
                return cursor.rowcount

        return self._run(erase_and_tell) > 0

    def watch_erasures(self, forget: Callable[[str | None], None]) -> Callable[[], None]:
        """Call ``forget(subject_id)`` on every erasure any process makes, from a thread that ``LISTEN``s;
        ``forget(None)`` after each (re)connection (what was erased while nobody listened is unknown).
        Returns what stops it."""
        stop = threading.Event()
        thread = threading.Thread(target=self._listen, args=(forget, stop), name="erasures", daemon=True)
        thread.start()

        return stop.set  # the thread ends within WAKE_SECONDS, closing its connection

    def _listen(self, forget: Callable[[str | None], None], stop: threading.Event) -> None:
        backoff = Backoff(0.2, 5.0, jitter=True)
        while not stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=CONNECT_SECONDS) as connection:
                    connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(ERASURES)))
                    forget(None)
                    self.hearing_erasures.set()
                    backoff.reset()
                    while not stop.is_set():
                        for notification in connection.notifies(timeout=WAKE_SECONDS):
                            forget(notification.payload)
            except psycopg.Error as error:
                self.hearing_erasures.clear()
                log.warning("not hearing erasures (%s); listening again in %.1fs", error, backoff.delay)
                stop.wait(backoff.next())

    def link(self, aggregate_id: str, subject_id: str) -> None:
        """Remember the subject of ``aggregate_id``."""
        self._run(lambda c: c.execute(sql.SQL(
            "INSERT INTO {} (aggregate_id, subject_id) VALUES (%s, %s) ON CONFLICT (aggregate_id) DO NOTHING"
        ).format(self.links), (aggregate_id, subject_id)))

    def link_many(self, links: Sequence[tuple[str, str]]) -> None:
        """Remember the subject of each aggregate, in one transaction."""
        statement = sql.SQL("INSERT INTO {} (aggregate_id, subject_id) VALUES (%s, %s) "
                            "ON CONFLICT (aggregate_id) DO NOTHING").format(self.links)

        def insert(connection: psycopg.Connection[Any]) -> None:
            with connection.transaction(), connection.cursor() as cursor:
                cursor.executemany(statement, list(links))

        self._run(insert)

    def subject_of(self, aggregate_id: str) -> str | None:
        """The subject linked to ``aggregate_id``, or ``None``."""
        row = self._run(lambda c: c.execute(sql.SQL("SELECT subject_id FROM {} WHERE aggregate_id = %s").format(
            self.links), (aggregate_id,)).fetchone())
        return None if row is None else row[0]

    def close(self) -> None:
        """Close the connection (reopened if used again)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``work`` on the connection; a connection found broken is reopened and ``work`` tried once more.
        The server being out is raised as the event store's ``OperationalError`` (what the followers and the
        API treat as an outage), not as a failure of the event being processed."""
        with self._lock:
            try:
                return self._run_once_more_if_broken(work)
            except psycopg.OperationalError as error:
                raise OperationalError(str(error)) from error
            except psycopg.InterfaceError as error:
                raise InterfaceError(str(error)) from error

    def _run_once_more_if_broken(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        try:
            return work(self._conn())
        except psycopg.OperationalError:
            if self._connection is not None and not self._connection.closed:
                raise
            self._connection = None
            return work(self._conn())

    def _conn(self) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=CONNECT_SECONDS)
        return self._connection
