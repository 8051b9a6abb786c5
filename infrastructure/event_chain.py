"""Append-only, tamper-evident event streams: no event can be updated or deleted, and each stored
event carries a hash chained to its predecessor's.

In PostgreSQL every events table refuses ``UPDATE``, ``DELETE`` and ``TRUNCATE`` by trigger, whoever
asks (the services' own roles included): "append-only" is enforced, not a library convention. Only
someone who may alter the table (its owner, a superuser) can get past that, and the chain then shows it.

In PostgreSQL every events table has a ``chain`` column that a ``BEFORE INSERT`` trigger fills,
whoever inserts::

    chain(v) = sha256(chain(v-1) || topic (UTF-8) || state || v as 8 bytes, big-endian)

with no predecessor for an aggregate's first event. It is computed over the stored bytes, so
crypto-shredding (which destroys keys, never rows) keeps every chain verifiable. ``verify`` reads a
store's events in stream order, computes the chain again and reports, per stream, the first version
whose stored hash does not match: an event edited, inserted or deleted outside the application (an
edit changes its own hash; a deletion breaks its successor's). It makes tampering evident, not
impossible: whoever can also rewrite the ``chain`` column can hide an edit, which is why the runtime
roles should not be able to update events at all (docs/security.md).

``clinic db migrate`` installs the column, the trigger and the chain of events stored before it.
SQLite (embedded mode) has no chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

_INSTALL_FUNCTION = """
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE previous bytea;
BEGIN
  SELECT chain INTO previous FROM {table}  -- static, so its plan is prepared once per connection
    WHERE originator_id = NEW.originator_id AND originator_version = NEW.originator_version - 1;
  NEW.chain := sha256(coalesce(previous, ''::bytea) || convert_to(coalesce(NEW.topic, ''), 'UTF8')
                      || coalesce(NEW.state, ''::bytea) || int8send(NEW.originator_version::int8));
  RETURN NEW;
END $$"""
_REFUSE_CHANGE = """
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'events are append-only: % on %.% refused', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END $$"""
_BACKFILL = """
DO $$
DECLARE event record; previous bytea; last_id {id_type};
BEGIN
  FOR event IN SELECT originator_id, originator_version, topic, state, chain FROM {table}
               ORDER BY originator_id, originator_version LOOP
    IF last_id IS DISTINCT FROM event.originator_id THEN previous := NULL; END IF;
    IF event.chain IS NULL THEN
      UPDATE {table} SET chain = sha256(coalesce(previous, ''::bytea) || convert_to(coalesce(event.topic, ''), 'UTF8')
                                        || coalesce(event.state, ''::bytea) || int8send(event.originator_version::int8))
        WHERE originator_id = event.originator_id AND originator_version = event.originator_version
        RETURNING chain INTO previous;
    ELSE
      previous := event.chain;
    END IF;
    last_id := event.originator_id;
  END LOOP;
END $$"""


def link(previous: bytes | None, topic: str, state: bytes, version: int) -> bytes:
    """The chain hash of one event, given its predecessor's (``None`` for an aggregate's first)."""
    return hashlib.sha256((previous or b"") + topic.encode() + state + version.to_bytes(8, "big", signed=True)).digest()


@dataclass(frozen=True)
class BrokenLink:
    """The first event of a stream whose stored hash does not match its chain."""

    store: str
    originator_id: UUID
    version: int
    why: str


@dataclass(frozen=True)
class Verification:
    store: str
    streams: int
    events: int
    broken: list[BrokenLink]


class PostgresEventChain:
    """The chain of one application's events table in PostgreSQL."""

    def __init__(self, name: str, datastore: Any, table: str) -> None:
        self.name = name
        self.datastore = datastore
        self.table = Identifier(datastore.schema, table)
        self.function = Identifier(datastore.schema, f"clinic_chain_{table}")
        self.refuse = Identifier(datastore.schema, "clinic_refuse_change")

    @classmethod
    def of(cls, app: Any) -> PostgresEventChain | None:
        """The chain of ``app``'s events, if they are stored in PostgreSQL."""
        recorder = app.recorder
        datastore = getattr(recorder, "datastore", None)
        if not isinstance(datastore, PostgresDatastore):
            return None
        return cls(app.name, datastore, recorder.events_table_name)

    def install(self) -> None:
        """The column, the chain trigger, the chain of the events stored before, and the triggers that
        refuse changes (idempotent; in one transaction)."""
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS chain bytea").format(self.table))
            cursor.execute(SQL(_INSTALL_FUNCTION).format(function=self.function, table=self.table))
            cursor.execute(SQL("CREATE OR REPLACE TRIGGER clinic_chain BEFORE INSERT ON {} FOR EACH ROW "
                               "EXECUTE FUNCTION {}()").format(self.table, self.function))
            cursor.execute(SQL("DROP TRIGGER IF EXISTS clinic_append_only ON {}").format(self.table))
            cursor.execute(SQL(_BACKFILL).format(table=self.table, id_type=SQL(self.datastore.originator_id_type)))
            cursor.execute(SQL(_REFUSE_CHANGE).format(function=self.refuse))
            cursor.execute(SQL("CREATE TRIGGER clinic_append_only BEFORE UPDATE OR DELETE ON {} FOR EACH ROW "
                               "EXECUTE FUNCTION {}()").format(self.table, self.refuse))
            cursor.execute(SQL("CREATE OR REPLACE TRIGGER clinic_no_truncate BEFORE TRUNCATE ON {} "
                               "FOR EACH STATEMENT EXECUTE FUNCTION {}()").format(self.table, self.refuse))

    def verify(self, originator_id: UUID | None = None) -> Verification:
        """Compute every stream's chain (or one's) again from the stored events and compare."""
        streams, events, broken = 0, 0, []
        current: Any = None
        previous: bytes | None = None
        expected_version = 0
        failed = False
        for row in self._rows(originator_id):
            if row["originator_id"] != current:
                current, previous, expected_version, failed = row["originator_id"], None, 0, False
                streams += 1
            events += 1
            expected_version += 1
            if failed:
                continue
            why = self._check(row, previous, expected_version)
            if why:
                broken.append(BrokenLink(self.name, row["originator_id"], row["originator_version"], why))
                failed = True
            previous = bytes(row["chain"]) if row["chain"] is not None else None
        return Verification(self.name, streams, events, broken)

    @staticmethod
    def _check(row: Any, previous: bytes | None, expected_version: int) -> str | None:
        if row["chain"] is None:
            return "no chain hash (stored without the trigger)"
        if row["originator_version"] != expected_version:
            return f"version {expected_version} is missing"
        state = bytes(row["state"]) if row["state"] is not None else b""
        if link(previous, row["topic"] or "", state, row["originator_version"]) != bytes(row["chain"]):
            return "its hash does not match its content and its predecessor's"
        return None

    def _rows(self, originator_id: UUID | None) -> Iterator[Any]:
        where = SQL("WHERE originator_id = %s") if originator_id is not None else SQL("")
        statement = SQL("SELECT originator_id, originator_version, topic, state, chain FROM {} {} "
                        "ORDER BY originator_id, originator_version").format(self.table, where)
        with self.datastore.get_connection() as connection, connection.transaction(), \
                connection.cursor(name="clinic_verify") as cursor:  # server-side: any number of events
            cursor.execute(statement, (originator_id,) if originator_id is not None else None)
            yield from cursor
