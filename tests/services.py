"""Which real servers the integration tiers can reach, and what to do when one is missing.

Tests that need a server ask for it through ``require_postgres()``: when the server is
down they are skipped, loudly (see the summary at the end of the run), unless
``CLINIC_REQUIRE_SERVICES=1`` is set, as ``.ci/run`` does, which turns a missing
server into a failure.
"""

from __future__ import annotations

import os
import socket

import pytest

POSTGRES_HOST = os.environ.get("CLINIC_TEST_POSTGRES_HOST", "127.0.0.1")
POSTGRES_PORT = int(os.environ.get("CLINIC_TEST_POSTGRES_PORT", "5432"))
POSTGRES_DB = os.environ.get("CLINIC_TEST_POSTGRES_DB", "test")
POSTGRES_USER = os.environ.get("CLINIC_TEST_POSTGRES_USER", "postgres")

HOW_TO_START = {
    "postgres": "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start "
    "(or set CLINIC_TEST_POSTGRES_HOST/PORT/DB/USER)",
}


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def services_required() -> bool:
    return os.environ.get("CLINIC_REQUIRE_SERVICES", "") not in ("", "0", "false", "no")


def require_postgres() -> None:
    """Skip (or, under CLINIC_REQUIRE_SERVICES=1, fail) when PostgreSQL is unreachable."""
    if _reachable(POSTGRES_HOST, POSTGRES_PORT):
        return
    message = _postgres_message()
    if services_required():
        pytest.fail(message + " (CLINIC_REQUIRE_SERVICES is set)")
    pytest.skip(message)


def _postgres_message() -> str:
    return f"PostgreSQL at {POSTGRES_HOST}:{POSTGRES_PORT} is unreachable; {HOW_TO_START['postgres']}"


def missing_services() -> dict[str, str]:
    """The servers the server tiers need that are not reachable now."""
    return {} if _reachable(POSTGRES_HOST, POSTGRES_PORT) else {"postgres": _postgres_message()}
