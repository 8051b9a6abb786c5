"""Deliver one event to a follower with exactly-once effect, whatever the broker does.

A broker may deliver a message twice (a lost ack), late (a redelivery after a later
message) or never acked (a crash between processing and ack). The follower records
its tracking position (leader name, notification id) in the same transaction as the
events it produces, with one row per notification (multi-row tracking). So:

- a first delivery is processed and committed with its tracking row;
- any later delivery of the same notification fails to insert that row, the whole
  transaction rolls back, and ``deliver`` reports ``DUPLICATE`` (ack it);
- an earlier notification arriving after a later one is simply processed.

Another ``IntegrityError`` (a concurrent write to the same aggregate) is re-raised
for the caller to retry.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.system import Follower


class Delivery(Enum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"


def deliver(follower: Follower[Any], domain_event: Any, tracking: Tracking) -> Delivery:
    """Process ``domain_event`` unless this follower already has (exact check)."""
    if has_processed(follower, tracking):
        return Delivery.DUPLICATE
    try:
        follower.process_event(domain_event, tracking)
    except IntegrityError:
        if has_processed(follower, tracking):
            return Delivery.DUPLICATE
        raise
    return Delivery.PROCESSED


def has_processed(follower: Follower[Any], tracking: Tracking) -> bool:
    """Whether this exact notification is in the follower's tracking records.

    The library's ``has_tracking_id`` answers "at or below the highest", which is
    wrong once deliveries can come out of order, so this asks each store directly.
    """
    recorder = follower.recorder
    leader, notification_id = tracking.application_name, tracking.notification_id
    module = type(recorder).__module__
    if module.startswith("eventsourcing.popo"):
        return _popo_has(recorder, leader, notification_id)
    if module.startswith("eventsourcing.sqlite"):
        return _sqlite_has(recorder, leader, notification_id)
    if module.startswith("eventsourcing.postgres"):
        return _postgres_has(recorder, leader, notification_id)
    if module.startswith("eventsourcing_sqlalchemy"):
        return _sqlalchemy_has(recorder, leader, notification_id)
    raise TypeError(f"no exact tracking lookup for {type(recorder).__qualname__}")


def _popo_has(recorder: Any, leader: str, notification_id: int) -> bool:
    # The in-memory store keeps only the highest position: it suits in-order delivery
    # (the embedded runner, tests), not a broker.
    return recorder.has_tracking_id(leader, notification_id)


def _sqlite_has(recorder: Any, leader: str, notification_id: int) -> bool:
    statement = "SELECT 1 FROM tracking WHERE application_name = ? AND notification_id = ?"
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(statement, [leader, notification_id])
        return cursor.fetchone() is not None


def _postgres_has(recorder: Any, leader: str, notification_id: int) -> bool:
    from psycopg.sql import SQL, Identifier

    statement = SQL("SELECT 1 FROM {0}.{1} WHERE application_name = %s AND notification_id = %s").format(
        Identifier(recorder.datastore.schema), Identifier(recorder.tracking_table_name))
    with recorder.datastore.get_connection() as connection, connection.cursor() as cursor:
        cursor.execute(statement, (leader, notification_id))
        return cursor.fetchone() is not None


def _sqlalchemy_has(recorder: Any, leader: str, notification_id: int) -> bool:
    record = recorder.tracking_record_cls
    with recorder.transaction(commit=False) as session:
        query = session.query(record).filter(record.application_name == leader,
                                             record.notification_id == notification_id)
        return session.query(query.exists()).scalar()
