"""The servers a local deployment runs against, whether they answer, and waiting for a condition."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse


class DeploymentError(RuntimeError):
    """A local deployment cannot start, or a process of it failed or did not become ready in time."""


@dataclass(frozen=True)
class Servers:
    """Where PostgreSQL, RabbitMQ and Redis are (each deployment isolates itself inside them)."""

    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_db: str = "test"
    postgres_user: str = "postgres"
    postgres_password: str = ""
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    redis_url: str = "redis://127.0.0.1:6379/0"
    rabbitmqctl: bool = True
    """Whether ``rabbitmqctl`` on this machine administers the broker at ``amqp_url`` (the local node): then
    each service gets a broker user of its own; else every service uses ``amqp_url``'s user."""

    def postgres_conninfo(self) -> str:
        """A libpq connection string for ``postgres_db``."""
        parts = {"host": self.postgres_host, "port": self.postgres_port, "dbname": self.postgres_db,
                 "user": self.postgres_user, "password": self.postgres_password}
        return " ".join(f"{key}={value}" for key, value in parts.items() if value != "")

    def postgres_env(self, schema: str) -> dict[str, str]:
        """eventsourcing's ``POSTGRES_*`` variables for a service storing in ``schema``."""
        return {"POSTGRES_DBNAME": self.postgres_db, "POSTGRES_HOST": self.postgres_host,
                "POSTGRES_PORT": str(self.postgres_port), "POSTGRES_USER": self.postgres_user,
                "POSTGRES_PASSWORD": self.postgres_password, "POSTGRES_SCHEMA": schema}

    def unreachable(self) -> list[str]:
        """Each server that does not answer now, named with its address."""
        amqp, redis = urlparse(self.amqp_url), urlparse(self.redis_url)
        addresses = {"PostgreSQL": (self.postgres_host, self.postgres_port),
                     "RabbitMQ": (amqp.hostname or "127.0.0.1", amqp.port or 5672),
                     "Redis": (redis.hostname or "127.0.0.1", redis.port or 6379)}
        return [f"{name} at {host}:{port} is unreachable" for name, (host, port) in addresses.items()
                if not reachable(host, port)]


def reachable(host: str, port: int) -> bool:
    """Whether a TCP connection to the server opens within a second."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def program(name: str) -> str | None:
    """The path of an installed program (nginx lives in an sbin directory, often off a user's PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``condition`` until it is truthy and return its value; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise DeploymentError(f"timed out after {timeout}s waiting for {what}")
