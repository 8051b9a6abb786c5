"""Least privilege in PostgreSQL: one login role per context, one read-only role for the projection worker.

``clinic db migrate --roles PREFIX`` creates each role if it is missing and grants it exactly this
(revoking anything else it held on the schema's tables)::

    role                      table                                   privileges
    <prefix>_<service>        its events                              SELECT, INSERT, UPDATE (see below)
                              its events' notification sequence       USAGE
                              its tracking (positions, processed)     SELECT, INSERT, UPDATE, DELETE
                              delivery attempts (a follower)          SELECT, INSERT, UPDATE, DELETE on
                                                                      its own rows (row-level security)
                              subject keys (if it reads personal      SELECT; INSERT if it holds personal
                              data: its own, or its leaders')         data; UPDATE if it erases
                              aggregate subjects (likewise)           SELECT; INSERT if it holds personal data
    <prefix>_projections      every context's events                  SELECT
                              subject keys, aggregate subjects        SELECT

The tables belong to the role that runs the migration, never to a runtime role: no service can
alter, drop or truncate a table, create one, or disable a trigger. A service cannot read or write
another context's tables. ``UPDATE`` on its own events is granted only because the event store
serialises writers with ``LOCK TABLE … IN EXCLUSIVE MODE``, which PostgreSQL allows only to a role
with ``UPDATE``, ``DELETE`` or ``TRUNCATE`` on the table; the append-only trigger
(``infrastructure.event_chain``) refuses every ``UPDATE`` and ``DELETE``, whoever asks.

Roles are created ``LOGIN`` without a password: where passwords are used, the database's operator
sets them (CloudNativePG: ``spec.managed.roles``, which also creates the roles, and the migration
then only grants).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import errors
from psycopg.sql import SQL, Composable, Identifier, Literal

PROJECTIONS = "projections"
"""The projection worker's role's suffix."""
KEYS_TABLE = "clinic_subject_keys"
LINKS_TABLE = "clinic_aggregate_subjects"
READ = ("SELECT",)
APPEND = ("SELECT", "INSERT", "UPDATE")
"""An events table: ``UPDATE`` for the writers' table lock only; the append-only trigger refuses every update."""
KEEP = ("SELECT", "INSERT", "UPDATE", "DELETE")


class RolesError(RuntimeError):
    """The roles cannot be created or granted (the migrating role may not), named with the fix."""


@dataclass(frozen=True)
class Grant:
    """Privileges on one table of the schema (``sequence``: also ``USAGE`` on its serial column's sequence)."""

    table: str
    privileges: tuple[str, ...]
    sequence: bool = False


@dataclass(frozen=True)
class DatabaseRole:
    """A login role and everything it may do in the schema."""

    name: str
    grants: tuple[Grant, ...]
    own_rows: tuple[str, str] | None = None
    """``(table, follower)``: of that shared table it sees and writes only the rows of ``follower``."""


@dataclass(frozen=True)
class ContextTables:
    """What one context stores in PostgreSQL, and what it does with personal data."""

    service: str
    name: str
    """Its application's name: the ``follower`` column of its delivery attempts."""
    events: str
    tracking: str
    follower: bool
    keys: bool
    """It reads personal data (its own events', or its leaders'), so it reads the data keys."""
    personal: bool
    """It seals personal data in its own events, so it adds data keys."""
    erases: bool


def role_name(prefix: str, service: str) -> str:
    """``clinic_scheduling``: the login role of ``service`` (or of the projection worker)."""
    return f"{prefix}_{service}"


def plan(prefix: str, contexts: Iterable[ContextTables], attempts_table: str) -> list[DatabaseRole]:
    """Every context's role, then the projection worker's."""
    contexts = list(contexts)
    roles = [DatabaseRole(role_name(prefix, context.service), _grants_of(context, attempts_table),
                          (attempts_table, context.name) if context.follower else None)
             for context in contexts]
    reads = tuple(Grant(context.events, READ) for context in contexts)
    roles.append(DatabaseRole(role_name(prefix, PROJECTIONS), (*reads, Grant(KEYS_TABLE, READ), Grant(LINKS_TABLE, READ))))
    return roles


def _grants_of(context: ContextTables, attempts_table: str) -> tuple[Grant, ...]:
    keys = ("SELECT", *(("INSERT",) if context.personal else ()), *(("UPDATE",) if context.erases else ()))
    links = ("SELECT", *(("INSERT",) if context.personal else ()))
    return (Grant(context.events, APPEND, sequence=True), Grant(context.tracking, KEEP),
            *((Grant(attempts_table, KEEP),) if context.follower else ()),
            *((Grant(KEYS_TABLE, keys), Grant(LINKS_TABLE, links)) if context.keys else ()))


def apply(cursor: Any, schema: str, roles: Sequence[DatabaseRole]) -> None:
    """Create the missing roles and make their privileges in ``schema`` exactly ``roles``' grants
    (``cursor``: a psycopg cursor in the migration's transaction)."""
    for role in roles:
        _create(cursor, role.name)
        name = Identifier(role.name)
        cursor.execute(SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(Identifier(schema), name))
        cursor.execute(SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(Identifier(schema), name))
        cursor.execute(SQL("GRANT USAGE ON SCHEMA {} TO {}").format(Identifier(schema), name))
        for grant in role.grants:
            _grant(cursor, schema, grant, name)
        _own_rows_only(cursor, schema, role)


def _own_rows_only(cursor: Any, schema: str, role: DatabaseRole) -> None:
    """Row-level security on a table the followers share: each role sees and writes its own rows only
    (the table's owner, who migrates, is not bound by it)."""
    if role.own_rows is None:
        return
    table, follower = Identifier(schema, role.own_rows[0]), Literal(role.own_rows[1])
    cursor.execute(SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(table))
    cursor.execute(SQL("DROP POLICY IF EXISTS {} ON {}").format(Identifier(role.name), table))
    cursor.execute(SQL("CREATE POLICY {} ON {} TO {} USING (follower = {}) WITH CHECK (follower = {})").format(
        Identifier(role.name), table, Identifier(role.name), follower, follower))


def _create(cursor: Any, role: str) -> None:
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    if cursor.fetchone() is not None:
        return
    try:
        cursor.execute(SQL("CREATE ROLE {} LOGIN").format(Identifier(role)))
    except errors.InsufficientPrivilege as error:
        raise RolesError(f"role {role} does not exist and this role may not create it: create it first "
                         "(CloudNativePG: spec.managed.roles), or migrate as a role with CREATEROLE") from error


def _grant(cursor: Any, schema: str, grant: Grant, role: Composable) -> None:
    table = Identifier(schema, grant.table)
    privileges = SQL(", ").join(SQL(privilege) for privilege in grant.privileges)
    cursor.execute(SQL("GRANT {} ON {} TO {}").format(privileges, table, role))
    if grant.sequence:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'notification_id')",
                       (SQL("{}").format(table).as_string(cursor),))
        row = cursor.fetchone()
        sequence = row[0] if not isinstance(row, dict) else row["pg_get_serial_sequence"]
        cursor.execute(SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(SQL(sequence), role))


def drop(cursor: Any, names: Iterable[str]) -> None:
    """Remove these roles and every privilege they hold in this database (a test's or a local
    deployment's roles, when it ends); absent ones are skipped."""
    for name in names:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
        if cursor.fetchone() is None:
            continue
        cursor.execute(SQL("DROP OWNED BY {}").format(Identifier(name)))
        cursor.execute(SQL("DROP ROLE {}").format(Identifier(name)))
