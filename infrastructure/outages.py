"""Whether an error means a dependency is out (retry later) rather than a bug or bad input, and its cause.

An outage is the event store, Redis or the broker not answering, refusing connections ("too many
clients"), timing out, or dropping the connection mid-query. It is transient: the HTTP API answers
``503`` with ``Retry-After``, a consumer returns the message without counting a retry, and nothing is
dead-lettered for it. A missing table or a failed login is not transient: retrying cannot mend it, so
it is no outage, and ``cause`` says what an operator has to fix.
"""

from __future__ import annotations

import re
import socket
import sqlite3
from collections.abc import Iterator, Mapping

import psycopg
import redis.exceptions
import sqlalchemy.exc
from eventsourcing.persistence import InterfaceError, OperationalError

from infrastructure.messaging.connection import BrokerError

OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError, InterfaceError,  # the eventsourcing recorders' wrappers of the drivers' errors
    psycopg.OperationalError, psycopg.InterfaceError, sqlalchemy.exc.OperationalError, sqlite3.OperationalError,
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError,
    BrokerError, ConnectionError, TimeoutError, socket.gaierror,
)
"""Error types that may mean a dependency is out (``is_outage`` then rules out the permanent ones)."""

PERMANENT = re.compile(
    r"no such table|does not exist|password authentication failed|authentication failed|"
    r"no pg_hba\.conf entry|permission denied|WRONGPASS|NOAUTH|ACCESS_REFUSED|certificate verify failed",
    re.IGNORECASE)
"""Messages of errors with an outage's type that retrying cannot mend: a missing table, database or
role, refused credentials, an untrusted certificate."""

CAUSES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(pattern, re.IGNORECASE), cause) for pattern, cause in (
    (r"too many clients|remaining connection slots|max number of clients", "the server refuses more connections "
                                                                             "(too many clients)"),
    (r"password authentication failed|authentication failed|WRONGPASS|NOAUTH|ACCESS_REFUSED",
     "the server refused our credentials"),
    (r"no pg_hba\.conf entry|permission denied", "the server does not let this user in"),
    (r"certificate verify failed", "the server's TLS certificate is not trusted"),
    (r"no such table|relation .* does not exist|table .* does not exist", "its tables are missing: run `clinic db "
                                                                          "migrate`"),
    (r"database .* does not exist", "the database does not exist"),
    (r"role .* does not exist", "the server has no such role (user)"),
    (r"connection refused|Errno 111", "connection refused (the server is down or not listening there)"),
    (r"name or service not known|nodename nor servname|getaddrinfo|Temporary failure in name resolution",
     "its host name does not resolve"),
    (r"timed? ?out|PoolTimeout|couldn't get a connection", "it did not answer in time"),
    (r"server closed the connection|connection reset|broken pipe|EOF|connection lost|Connection closed",
     "the connection dropped"),
    (r"database is locked", "the database is locked by another writer"),
))


def permanent(text: str) -> bool:
    """Whether an error's text names a cause retrying cannot mend (``PERMANENT``)."""
    return PERMANENT.search(text) is not None


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is a dependency being out, which retrying later mends."""
    chain = list(_chain(error))
    if any(permanent(str(e)) for e in chain):
        return False
    return any(isinstance(e, OUTAGE_ERRORS) for e in chain)


def cause(error: BaseException) -> str:
    """The real cause of ``error`` in words an operator acts on, with the driver's own message."""
    chain = list(_chain(error))
    text = " / ".join(dict.fromkeys(line for e in chain if (line := _first_line(e))))
    for pattern, meaning in CAUSES:
        if any(pattern.search(f"{type(e).__name__}: {e}") for e in chain):
            return f"{meaning} ({text})" if text else meaning
    return text or type(error).__name__


def diagnose_postgres(env: Mapping[str, str], timeout: int = 2) -> str | None:
    """Why a pool could not get a PostgreSQL connection, from one direct attempt with the store's
    ``POSTGRES_*`` settings (a pool's timeout hides the server's answer); ``None``: it connects now."""
    try:
        psycopg.connect(host=env.get("POSTGRES_HOST"), port=env.get("POSTGRES_PORT"), user=env.get("POSTGRES_USER"),
                        password=env.get("POSTGRES_PASSWORD"), dbname=env.get("POSTGRES_DBNAME"),
                        connect_timeout=timeout).close()
    except psycopg.Error as error:
        return cause(error)
    return None


def explain(error: BaseException, env: Mapping[str, str] | None = None) -> str:
    """``cause``, and for a PostgreSQL pool that timed out, what a direct connection attempt says."""
    if env is not None and env.get("POSTGRES_HOST") and any(
            "couldn't get a connection" in str(e) for e in _chain(error)):
        found = diagnose_postgres(env)
        return found or "every pooled connection stayed busy (the server accepts connections)"
    return cause(error)


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, then what raised it (``__cause__`` or ``__context__``), and so on."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else ""
