"""How many times each message was delivered again without being settled: the delivery limit of
classic queues.

A message that kills its consumer (a crash, an out-of-memory kill) is never acked and never
failed: RabbitMQ's classic queues redeliver it for ever, marked ``redelivered``, and each
redelivery kills the next consumer. So before a redelivered message is processed, its delivery is
counted in the follower's own PostgreSQL (one row per message still being redelivered; written only
for redeliveries, so the usual path costs nothing); past the limit the consumer dead-letters it
unprocessed (``delivery-limit``), and a settled message's row is deleted. The count is durable, so
it survives the very crash it guards against, and shared by every worker of the context.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier


class DeliveryAttempts(Protocol):
    """Counts of deliveries of messages that came again unsettled, per follower."""

    def count(self, follower: str, message_ids: Sequence[str]) -> dict[str, int]:
        """Count one more delivery of each message; each one's deliveries counted so far."""

    def forget(self, follower: str, message_ids: Sequence[str]) -> None:
        """The messages were settled: their counts are no longer needed."""


class PostgresDeliveryAttempts:
    """``DeliveryAttempts`` in a table beside a context's events (``clinic db migrate`` creates it)."""

    TABLE = "delivery_attempts"

    def __init__(self, datastore: Any) -> None:
        self.datastore = datastore
        """The eventsourcing ``PostgresDatastore`` of the follower (its pool, its schema)."""
        self.table = Identifier(datastore.schema, self.TABLE)

    @classmethod
    def of(cls, app: Any) -> PostgresDeliveryAttempts | None:
        """The attempts of ``app``'s store, if it is PostgreSQL (the only store distributed mode runs on)."""
        datastore = getattr(app.recorder, "datastore", None)
        return cls(datastore) if isinstance(datastore, PostgresDatastore) else None

    def create_table(self) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(SQL("CREATE TABLE IF NOT EXISTS {} (follower text NOT NULL, message_id text NOT NULL, "
                               "attempts integer NOT NULL, since timestamptz NOT NULL DEFAULT now(), "
                               "PRIMARY KEY (follower, message_id))").format(self.table))

    def count(self, follower: str, message_ids: Sequence[str]) -> dict[str, int]:
        if not message_ids:
            return {}
        statement = SQL("INSERT INTO {} AS t (follower, message_id, attempts) SELECT %s, id, 2 FROM unnest(%s::text[]) "
                        "AS id ON CONFLICT (follower, message_id) DO UPDATE SET attempts = t.attempts + 1 "
                        "RETURNING message_id, attempts").format(self.table)
        unique = list(dict.fromkeys(message_ids))  # one batch may hold a message twice (a relay's republish)
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(statement, (follower, unique))
            return {row["message_id"]: row["attempts"] for row in cursor.fetchall()}

    def forget(self, follower: str, message_ids: Sequence[str]) -> None:
        if not message_ids:
            return
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(SQL("DELETE FROM {} WHERE follower = %s AND message_id = ANY(%s)").format(self.table),
                           (follower, list(message_ids)))
