"""The event store's process recorders: a whole batch's tracking rows in its transaction, an exact
answer to "which of these notifications were processed already?", and the events of many aggregates
in one query (a batch loads every aggregate its events will touch at once).

The library's process recorders take one ``tracking`` per transaction. A follower fed by a broker
records a *batch* of notifications in one transaction, and may see them out of order (a
redelivery), so it needs a row per notification (multi-row tracking, ``SINGLE_ROW_TRACKING=n``)
and an exact lookup: the library's ``has_tracking_id`` answers "at or below the highest", which is
wrong once deliveries can come out of order. These subclasses add both; ``Settings`` names them
(``PROCESS_RECORDER_TOPIC``) for the SQLite and PostgreSQL stores. The in-memory and SQLAlchemy
stores keep the library's recorders: they serve in-order delivery only (the embedded runner, tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent, Tracking
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresProcessRecorder, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteCursor, SQLiteProcessRecorder
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from process_managers.base import TRACKINGS

T = TypeVar("T")

BACKENDS = {"eventsourcing.postgres": "postgres", "eventsourcing.sqlite": "sqlite", "eventsourcing.popo": "memory",
            "eventsourcing_sqlalchemy": "sqlalchemy"}


def storage_backend(component: Any) -> str:
    """``postgres``, ``sqlite``, ``sqlalchemy`` or ``memory``: the store an application's recorder or
    factory belongs to, told by the library module that defines its class or a base (``event_store``: unknown)."""
    for cls in type(component).__mro__:
        backend = next((name for prefix, name in BACKENDS.items() if cls.__module__.startswith(prefix)), None)
        if backend:
            return backend
    return "event_store"


def _by_leader(trackings: Iterable[Tracking]) -> dict[str, list[int]]:
    leaders: dict[str, list[int]] = {}
    for tracking in trackings:
        leaders.setdefault(tracking.application_name, []).append(tracking.notification_id)
    return leaders


class SQLiteBatchRecorder(SQLiteProcessRecorder):
    """SQLite: every tracking row of a batch inserted with its events; exact lookups."""

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        returning = super()._insert_events(c, stored_events, **kwargs)
        trackings = kwargs.get(TRACKINGS)
        if trackings:
            self._check_has_multi_row_tracking_table(c)
            c.executemany(self.insert_tracking_statement, [
                {"application_name": t.application_name, "notification_id": t.notification_id} for t in trackings])
        return returning

    def select_events_of(self, originator_ids: Sequence[UUID]) -> dict[Any, list[StoredEvent]]:
        """Every event of each of these aggregates, in version order, in one query (absent: no events)."""
        ids = [i.hex if isinstance(i, UUID) else i for i in originator_ids]
        statement = (f"SELECT * FROM {self.events_table_name} WHERE originator_id IN "  # noqa: S608
                     f"({','.join('?' * len(ids))}) ORDER BY originator_id, originator_version")
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, ids)
            return _grouped(StoredEvent(originator_id=self.convert_originator_id(row["originator_id"]),
                                        originator_version=row["originator_version"], topic=row["topic"],
                                        state=row["state"]) for row in cursor.fetchall())

    def processed(self, trackings: Sequence[Tracking]) -> set[tuple[str, int]]:
        """The ``(leader, notification id)`` of ``trackings`` already recorded."""
        found: set[tuple[str, int]] = set()
        with self.datastore.transaction(commit=False) as cursor:
            for leader, ids in _by_leader(trackings).items():
                marks = ",".join("?" * len(ids))
                cursor.execute(f"SELECT notification_id FROM tracking WHERE application_name = ? "  # noqa: S608
                               f"AND notification_id IN ({marks})", [leader, *ids])
                found |= {(leader, row[0]) for row in cursor.fetchall()}
        return found


def _grouped(rows: Iterable[StoredEvent]) -> dict[Any, list[StoredEvent]]:
    events: dict[Any, list[StoredEvent]] = {}
    for row in rows:
        events.setdefault(row.originator_id, []).append(row)
    return events


STORE_ATTEMPTS = 2
"""How many times a PostgreSQL recorder tries a query before the error reaches its caller. The library
tries ten times, 0.2 s apart, each time waiting for a pooled connection: during an outage a request
would hang for many seconds. Two attempts still ride out a connection dropped by a restarted server
(the second takes a fresh one); the callers (the API's 503, the followers' backoff) handle the rest."""

_RETRIED = ("insert_events", "select_events", "select_notifications", "max_notification_id", "insert_tracking",
            "max_tracking_id", "has_tracking_id")
"""The recorder methods the library wraps in its retry decorator."""


def fewer_attempts(cls: type[T]) -> type[T]:
    """``cls`` with each of the library's retried methods trying ``STORE_ATTEMPTS`` times, 0.1 s apart."""
    for name in _RETRIED:
        method = getattr(cls, name, None)
        if method is not None and hasattr(method, "__wrapped__"):
            setattr(cls, name, retry((InterfaceError, OperationalError), max_attempts=STORE_ATTEMPTS,
                                     wait=0.1)(method.__wrapped__))
    return cls


@fewer_attempts
class PostgresStoreRecorder(PostgresApplicationRecorder):
    """PostgreSQL: a context's event log, failing fast (``STORE_ATTEMPTS``) when the server is out."""


@fewer_attempts
class PostgresPositionRecorder(PostgresTrackingRecorder):
    """PostgreSQL: a relay's saved positions, failing fast (``STORE_ATTEMPTS``) when the server is out."""


@fewer_attempts
class PostgresBatchRecorder(PostgresProcessRecorder):
    """PostgreSQL: every tracking row of a batch inserted in its transaction's pipeline; exact lookups."""

    def _insert_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        trackings = kwargs.get(TRACKINGS)
        if trackings:
            self._check_has_multi_row_tracking_table(curs)
            curs.executemany(self.insert_tracking_statement, [
                {"application_name": t.application_name, "notification_id": t.notification_id} for t in trackings])
        super()._insert_events(curs, stored_events, **kwargs)

    def select_events_of(self, originator_ids: Sequence[UUID]) -> dict[Any, list[StoredEvent]]:
        """Every event of each of these aggregates, in version order, in one query (absent: no events)."""
        statement = SQL("SELECT * FROM {0}.{1} WHERE originator_id = ANY(%s) ORDER BY originator_id, "
                        "originator_version").format(Identifier(self.datastore.schema),
                                                      Identifier(self.events_table_name))
        with self.datastore.get_connection() as connection, connection.cursor() as cursor:
            cursor.execute(statement, (list(originator_ids),), prepare=True)
            return _grouped(StoredEvent(originator_id=row["originator_id"],
                                        originator_version=row["originator_version"], topic=row["topic"],
                                        state=bytes(row["state"])) for row in cursor.fetchall())

    def processed(self, trackings: Sequence[Tracking]) -> set[tuple[str, int]]:
        """The ``(leader, notification id)`` of ``trackings`` already recorded (one query per leader)."""
        statement = SQL("SELECT notification_id FROM {0}.{1} WHERE application_name = %s "
                        "AND notification_id = ANY(%s)").format(Identifier(self.datastore.schema),
                                                                 Identifier(self.tracking_table_name))
        found: set[tuple[str, int]] = set()
        with self.datastore.get_connection() as connection, connection.cursor() as cursor:
            for leader, ids in _by_leader(trackings).items():
                cursor.execute(statement, (leader, ids), prepare=True)
                found |= {(leader, row["notification_id"]) for row in cursor.fetchall()}
        return found

