"""``amqps://`` connections do real TLS: against a local TLS listener that demands a client
certificate (the handshake RabbitMQ does with ``verify_peer`` + ``fail_if_no_peer_cert``), and
plain ``amqp://`` through the same ``connect`` against the real broker.

The shared RabbitMQ has no TLS listener and must not be reconfigured, so the TLS side is a
Python listener that records what it saw in the handshake and then closes (no AMQP spoken).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading

import aiormq
import pytest

from infrastructure.messaging.connection import BrokerTls, connect
from infrastructure.tls import Pki, create_dev_pki, server_ssl_context
from tests import services

WAIT = 5.0
pytestmark = pytest.mark.anyio


class HandshakeRecorder:
    """Accepts one TLS connection per ``accept()``, records the peer's CN or the handshake error."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        conn, _ = self._listener.accept()
        conn.settimeout(WAIT)
        try:
            with self._context.wrap_socket(conn, server_side=True) as tls:
                subject = dict(part[0] for part in tls.getpeercert()["subject"])
                self.seen.append(f"client {subject['commonName']}")
        except (ssl.SSLError, OSError) as error:
            self.seen.append(f"refused: {getattr(error, 'reason', None) or error}")
        finally:
            conn.close()

    def close(self) -> None:
        self._thread.join(WAIT)
        self._listener.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return create_dev_pki(tmp_path_factory.mktemp("amqps") / "pki", services=("rabbitmq", "booking"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory) -> Pki:
    return create_dev_pki(tmp_path_factory.mktemp("amqps-other") / "pki", services=("rabbitmq", "booking"))


async def attempt(url: str, tls: BrokerTls) -> BaseException:
    """Connect; the listener speaks no AMQP, so the connection always fails after the handshake."""
    with pytest.raises((aiormq.exceptions.AMQPError, ConnectionError, OSError)) as failed:
        await asyncio.wait_for(connect(url, tls), WAIT)
    return failed.value


async def test_the_client_presents_its_certificate_to_a_broker_from_our_ca(pki):
    broker = HandshakeRecorder(server_ssl_context(pki, "rabbitmq"))
    tls = BrokerTls(pki.ca_file, pki.cert_file("booking"), pki.key_file("booking"))
    await attempt(f"amqps://guest:guest@127.0.0.1:{broker.port}/", tls)
    broker.close()
    assert broker.seen == ["client booking"]


async def test_without_a_client_certificate_the_broker_refuses_the_handshake(pki):
    broker = HandshakeRecorder(server_ssl_context(pki, "rabbitmq"))
    await attempt(f"amqps://guest:guest@127.0.0.1:{broker.port}/", BrokerTls(pki.ca_file))
    broker.close()
    assert broker.seen == ["refused: PEER_DID_NOT_RETURN_A_CERTIFICATE"]


async def test_the_client_refuses_a_broker_it_does_not_trust(pki, other_pki):
    broker = HandshakeRecorder(server_ssl_context(other_pki, "rabbitmq"))
    tls = BrokerTls(pki.ca_file, pki.cert_file("booking"), pki.key_file("booking"))
    error = await attempt(f"amqps://guest:guest@127.0.0.1:{broker.port}/", tls)
    broker.close()
    assert "certificate verify failed" in repr(error) + repr(error.__cause__) + repr(error.__context__)
    assert broker.seen and broker.seen[0].startswith("refused")


async def test_a_plain_url_still_connects_to_the_real_broker():
    services.require_rabbitmq()
    connection = await connect(services.amqp_url())
    try:
        assert not connection.is_closed
    finally:
        await connection.close()
