"""Sends webhook deliveries: an HTTP POST signed as the Standard Webhooks specification says.

Each request carries ``webhook-id`` (the delivery's id: the same on every attempt, so a client drops
repeats), ``webhook-timestamp`` (this attempt's time, in the signature: a client refuses old ones and
so a replay) and ``webhook-signature`` (``v1,`` and the HMAC-SHA256 of ``id.timestamp.body`` with the
subscription's secret), computed by the ``standardwebhooks`` library that clients verify with.

The destination is checked at every attempt, not only when subscribed: unless private networks are
allowed, a URL whose host resolves to a loopback, private, link-local or otherwise non-public address
is refused, so a subscription cannot make the clinic call into its own network. Redirects are not
followed (a redirect could lead there too). The cluster's egress policy is the second wall.
"""

from __future__ import annotations

import ipaddress
import socket
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook

from domain.webhooks import SendResult

USER_AGENT = "clinic-webhooks/1"


class DestinationRefusedError(Exception):
    """The URL's host is not a public address, and private networks are not allowed."""


class HttpWebhookSender:
    """POSTs each delivery with ``httpx`` and answers with the client's status (or why there was none)."""

    def __init__(self, timeout_seconds: float = 5.0, allow_private_networks: bool = False) -> None:
        self.allow_private_networks = allow_private_networks
        self.client = httpx.Client(timeout=timeout_seconds, follow_redirects=False,
                                   headers={"user-agent": USER_AGENT})

    def send(self, url: str, secret: str, message_id: str, body: str) -> SendResult:
        try:
            self._check_destination(url)
        except DestinationRefusedError as refused:
            return SendResult(None, str(refused))
        now = datetime.now(UTC)
        signature = Webhook(secret).sign(message_id, now, body)
        headers = {"content-type": "application/json", "webhook-id": message_id,
                   "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}
        try:
            response = self.client.post(url, content=body.encode(), headers=headers)
        except httpx.HTTPError as error:
            return SendResult(None, f"{type(error).__name__}: {error}"[:300])
        refusal = None if response.is_success else f"the client answered {response.status_code}"
        return SendResult(response.status_code, refusal)

    def close(self) -> None:
        self.client.close()

    def _check_destination(self, url: str) -> None:
        if self.allow_private_networks:
            return
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                       type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise DestinationRefusedError(f"cannot resolve {host}: {error}") from None
        for *_, address in infos:
            ip = ipaddress.ip_address(address[0])
            if not ip.is_global:
                raise DestinationRefusedError(f"{host} resolves to {ip}, which is not a public address")
