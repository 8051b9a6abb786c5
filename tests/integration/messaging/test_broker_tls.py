"""``amqps://`` against a real RabbitMQ node that speaks it: a private node listening for AMQPS only,
with ``verify_peer`` and ``fail_if_no_peer_cert`` (the broker's production TLS options), certificates
from the development CA. The services' own ``connect`` verifies the broker fully (its CA, its host
name) and presents the service's certificate; it refuses a broker presenting another CA's certificate,
and the broker refuses a client without one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiormq
import pytest

from infrastructure.messaging.connection import BrokerTls, connect
from infrastructure.tls import Pki
from interfaces.local_deployment.private_servers import PrivateRabbitMQ, ServerTls
from tests import services
from tests.private_servers import free_port, installed, ours_and_foreign, scratch

WAIT = 10.0
pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def pkis(tmp_path_factory) -> tuple[Pki, Pki]:
    """The development CA's certificates, and another CA's (a foreign broker, a foreign client)."""
    return ours_and_foreign(tmp_path_factory.mktemp("amqps"), ("rabbitmq", "booking"))


@pytest.fixture(scope="module")
def broker(pkis) -> Iterator[PrivateRabbitMQ]:
    ours, _ = pkis
    with scratch("clinic-amqps-") as root:
        node = installed(lambda: PrivateRabbitMQ(root, free_port(), tls=ServerTls.of(ours, "rabbitmq")))
        node.start()
        try:
            yield node
        finally:
            node.stop()


def booking(pki: Pki) -> BrokerTls:
    """The booking service's broker TLS settings (``CLINIC_AMQP_CA_FILE``, ``_CERT_FILE``, ``_KEY_FILE``)."""
    return BrokerTls(pki.ca_file, pki.cert_file("booking"), pki.key_file("booking"))


async def failure(url: str, tls: BrokerTls) -> str:
    with pytest.raises((aiormq.exceptions.AMQPError, ConnectionError, OSError)) as failed:
        connection = await asyncio.wait_for(connect(url, tls), WAIT)
        await connection.close()
    error = failed.value
    return " ".join(repr(e) for e in (error, error.__cause__, error.__context__))


async def test_a_service_publishes_and_consumes_over_verified_tls_with_its_certificate(broker, pkis):
    ours, _ = pkis
    connection = await asyncio.wait_for(connect(broker.url, booking(ours)), WAIT)
    try:
        channel = await connection.channel()
        queue = (await channel.queue_declare("", exclusive=True)).queue
        received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def take(message: aiormq.abc.DeliveredMessage) -> None:
            received.set_result(message.body)

        await channel.basic_consume(queue, take, no_ack=True)
        await channel.basic_publish(b"over tls", routing_key=queue)
        assert await asyncio.wait_for(received, WAIT) == b"over tls"
    finally:
        await connection.close()


async def test_the_broker_refuses_a_client_without_a_certificate(broker, pkis):
    ours, _ = pkis
    assert await failure(broker.url, BrokerTls(ours.ca_file))


async def test_the_broker_refuses_a_client_certificate_of_another_ca(broker, pkis):
    ours, foreign = pkis
    tls = BrokerTls(ours.ca_file, foreign.cert_file("booking"), foreign.key_file("booking"))
    assert await failure(broker.url, tls)


async def test_a_service_refuses_a_broker_presenting_another_cas_certificate(broker, pkis):
    ours, foreign = pkis
    broker.present(ServerTls.of(foreign, "rabbitmq"))
    try:
        assert "certificate verify failed" in await failure(broker.url, booking(ours))
    finally:
        broker.present(ServerTls.of(ours, "rabbitmq"))


async def test_a_plain_url_still_connects_to_the_shared_broker():
    services.require_rabbitmq()
    connection = await connect(services.amqp_url())
    try:
        assert not connection.is_closed
    finally:
        await connection.close()
