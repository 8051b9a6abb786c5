"""The webhook sender against a real HTTP endpoint: what it signs and sends, what it refuses to call, and
how it reports a client that does not take a delivery."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator

import pytest

from domain.webhooks import SendResult
from infrastructure.webhooks import HttpWebhookSender
from tests.kit.webhooks import WebhookReceiver, webhook_receiver

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
BODY = '{"data":{"consultation_id":"c"},"type":"consultation.confirmed"}'


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
def sender() -> Iterator[HttpWebhookSender]:
    sender = HttpWebhookSender(timeout_seconds=2, allow_private_networks=True)
    yield sender
    sender.close()


def test_a_delivery_is_posted_with_its_id_and_a_signature_the_client_library_accepts(sender, receiver):
    message_id = str(uuid.uuid4())
    assert sender.send(receiver.url, SECRET, message_id, BODY) == SendResult(200)
    sent = receiver.next()
    assert sent.verified(SECRET)["type"] == "consultation.confirmed"
    assert sent.body == BODY.encode() and sent.headers["webhook-id"] == message_id
    assert sent.headers["user-agent"].startswith("clinic-webhooks/")


def test_an_answer_other_than_2xx_is_a_failure_and_a_redirect_is_not_followed(sender, receiver):
    receiver.answers = [503, 307]
    assert sender.send(receiver.url, SECRET, "m-1", BODY) == SendResult(503, "the client answered 503")
    assert sender.send(receiver.url, SECRET, "m-1", BODY) == SendResult(307, "the client answered 307")
    assert [receiver.next().path for _ in range(2)] == ["/hooks/clinic"] * 2 and receiver.received.empty()


def test_no_answer_is_a_failure_naming_why(sender, receiver):
    closed = receiver.url.replace(str(receiver.server.server_address[1]), "1")
    result = sender.send(closed, SECRET, "m-1", BODY)
    assert result.status_code is None and "ConnectError" in (result.error or "")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "10.1.2.3", "169.254.169.254"])
def test_a_host_inside_private_networks_is_refused_without_a_request(receiver, host):
    sender = HttpWebhookSender(timeout_seconds=2)
    try:
        port = receiver.server.server_address[1]
        result = sender.send(f"http://{host}:{port}/hooks/clinic", SECRET, "m-1", BODY)
    finally:
        sender.close()
    assert result.status_code is None and "not a public address" in (result.error or "")
    assert receiver.received.empty()
