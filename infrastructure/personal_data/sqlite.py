"""The subject key store in a SQLite file (embedded mode: ``<CLINIC_DATA_DIR>/keys.sqlite``).

``secure_delete`` zeroes the bytes of a destroyed key in the file, and every erasure is
followed by a WAL checkpoint that truncates the log, so the wrapped key leaves both files.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from infrastructure.personal_data.keys import KeyRecord

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS subject_keys (subject_id TEXT PRIMARY KEY, kek_id TEXT, wrapped_key BLOB, "
    "created_at TEXT NOT NULL, erased_at TEXT)",
    "CREATE TABLE IF NOT EXISTS aggregate_subjects (aggregate_id TEXT PRIMARY KEY, subject_id TEXT NOT NULL)",
)
ERASE = ("INSERT INTO subject_keys (subject_id, kek_id, wrapped_key, created_at, erased_at) "
         "VALUES (?, NULL, NULL, ?, ?) ON CONFLICT (subject_id) DO UPDATE SET kek_id = NULL, wrapped_key = NULL, "
         "erased_at = excluded.erased_at WHERE subject_keys.erased_at IS NULL")


class SQLiteKeyStore:
    """A ``SubjectKeyStore`` over one SQLite file, shared by the contexts of one host."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    def create_tables(self) -> None:
        """Create the tables if missing."""
        with self._lock:
            for statement in SCHEMA:
                self._conn().execute(statement)

    def add_key(self, subject_id: str, kek_id: str, wrapped_key: bytes, now: datetime) -> None:
        """Store the subject's first key unless they have a row."""
        self._execute("INSERT INTO subject_keys (subject_id, kek_id, wrapped_key, created_at) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT (subject_id) DO NOTHING", (subject_id, kek_id, wrapped_key, now.isoformat()))

    def record(self, subject_id: str) -> KeyRecord | None:
        """The subject's row, or ``None``."""
        with self._lock:
            row = self._conn().execute("SELECT kek_id, wrapped_key, erased_at FROM subject_keys WHERE subject_id = ?",
                                       (subject_id,)).fetchone()
        if row is None:
            return None
        return KeyRecord(row[0], row[1], datetime.fromisoformat(row[2]) if row[2] else None)

    def erase(self, subject_id: str, now: datetime) -> bool:
        """Overwrite the subject's key with a tombstone, then checkpoint; ``False`` if already erased."""
        with self._lock:
            changed = self._conn().execute(ERASE, (subject_id, now.isoformat(), now.isoformat())).rowcount
            self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return changed > 0

    def link(self, aggregate_id: str, subject_id: str) -> None:
        """Remember the subject of ``aggregate_id``."""
        self._execute("INSERT INTO aggregate_subjects (aggregate_id, subject_id) VALUES (?, ?) "
                      "ON CONFLICT (aggregate_id) DO NOTHING", (aggregate_id, subject_id))

    def link_many(self, links: Sequence[tuple[str, str]]) -> None:
        """Remember the subject of each aggregate, in one transaction."""
        with self._lock:
            connection = self._conn()
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany("INSERT INTO aggregate_subjects (aggregate_id, subject_id) VALUES (?, ?) "
                                       "ON CONFLICT (aggregate_id) DO NOTHING", list(links))
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def subject_of(self, aggregate_id: str) -> str | None:
        """The subject linked to ``aggregate_id``, or ``None``."""
        with self._lock:
            row = self._conn().execute("SELECT subject_id FROM aggregate_subjects WHERE aggregate_id = ?",
                                       (aggregate_id,)).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        """Close the connection (reopened if used again)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _execute(self, sql: str, parameters: tuple[object, ...]) -> None:
        with self._lock:
            self._conn().execute(sql, parameters)

    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA secure_delete = ON")
            connection.execute("PRAGMA journal_mode = WAL")
            self._connection = connection
        return self._connection
