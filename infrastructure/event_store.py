"""The event store's process recorders: a whole batch's tracking rows in its transaction, and an
exact answer to "which of these notifications were processed already?".

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
from typing import Any

from eventsourcing.persistence import StoredEvent, Tracking
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteCursor, SQLiteProcessRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from process_managers.base import TRACKINGS


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


class PostgresBatchRecorder(PostgresProcessRecorder):
    """PostgreSQL: every tracking row of a batch inserted in its transaction's pipeline; exact lookups."""

    def _insert_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        trackings = kwargs.get(TRACKINGS)
        if trackings:
            self._check_has_multi_row_tracking_table(curs)
            curs.executemany(self.insert_tracking_statement, [
                {"application_name": t.application_name, "notification_id": t.notification_id} for t in trackings])
        super()._insert_events(curs, stored_events, **kwargs)

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

