"""Connecting to the broker: plain ``amqp://``, or ``amqps://`` with our own TLS context.

For ``amqps://`` the context trusts only ``ca_file`` when given (else the system's CAs), checks
the broker's host name, requires TLS 1.2 or later and, with ``cert_file``/``key_file``, presents
a client certificate (RabbitMQ ``ssl_options.verify = verify_peer`` with
``fail_if_no_peer_cert = true``; docs/service-identity-and-tls.md). aiormq would otherwise build
a default context from ``?cafile=...`` query parameters; ours is explicit and tested.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiormq
from aiormq.abc import AbstractConnection
from yarl import URL

from infrastructure.tls import make_client_context

BrokerConnection = AbstractConnection
"""A connection to the broker, as the application's runner holds it."""
BrokerError = aiormq.exceptions.AMQPError
"""Any failure the broker or the AMQP protocol reports (a lost connection, a refused operation)."""


@dataclass(frozen=True)
class BrokerTls:
    """The TLS material of a broker connection (all optional; only for ``amqps://``)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def configured(self) -> bool:
        return any((self.ca_file, self.cert_file, self.key_file))


def connection_options(url: str, tls: BrokerTls = BrokerTls()) -> dict[str, Any]:
    """The keyword arguments for ``aiormq.connect(url, ...)``: an SSL context for ``amqps://``."""
    scheme = URL(url).scheme
    if scheme not in ("amqp", "amqps"):
        raise ValueError(f"the broker URL must start with amqp:// or amqps://, not {scheme}://")
    if scheme == "amqp":
        if tls.configured:
            raise ValueError("a CA or client certificate for the broker needs an amqps:// URL")
        return {}
    return {"context": broker_ssl_context(tls)}


def broker_ssl_context(tls: BrokerTls) -> ssl.SSLContext:
    """Verify the broker (``ca_file`` only, or the system's CAs; host name) and present our pair."""
    if tls.ca_file is not None:
        return make_client_context(tls.ca_file, tls.cert_file, tls.key_file)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    return context


async def connect(url: str, tls: BrokerTls = BrokerTls()) -> AbstractConnection:
    """A broker connection, over TLS when ``url`` is ``amqps://``."""
    return await aiormq.connect(url, **connection_options(url, tls))
