"""Least privilege on a real RabbitMQ: a service's user does all its follower and relay need, and no more.

Each test creates the scheduling and booking services' users (random passwords) with ``rabbitmqctl``,
grants them ``service_permissions``, and declares the system as the admin (guest) does in its admin
step; then it connects as those users. The users, queues and exchanges are deleted after. Where
``rabbitmqctl`` is missing or may not be run (not root, no Erlang cookie) the tests are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiormq
import pytest
from aiormq.abc import AbstractChannel, AbstractConnection, Basic, DeliveredMessage
from aiormq.exceptions import ChannelAccessRefused

from application.bootstrap import SUBSCRIPTIONS, SYSTEM
from application.contexts import BY_SERVICE
from infrastructure.messaging.dlq import DeadLetterDesk, DeadLetterQueue
from infrastructure.messaging.permissions import console_permissions, rabbitmqctl_commands, service_permissions
from infrastructure.messaging.topology import (
    ORDERING_KEY,
    FollowerQueues,
    Topology,
    binding_keys,
    declare_follower,
    declare_system,
)
from tests import services
from tests.integration.messaging.conftest import TEST_DELAYS_MS
from tests.kit import eventually_async

pytestmark = pytest.mark.anyio

SERVICES = ("scheduling", "booking")
CONSOLE = "console"
"""The operations console's user: the followers' dead letters only."""
NOT_ALLOWED_TO_RUN = ("Only root or rabbitmq", "ermission denied", "eacces", "cookie")
"""What ``rabbitmqctl`` says when this user may not run it (rather than when a command is wrong)."""


def rabbitmqctl(args: list[str], check: bool = True) -> None:
    """Run ``rabbitmqctl`` (``args[0]``); skip the test if it is missing or may not be run here."""
    if shutil.which(args[0]) is None:
        pytest.skip("rabbitmqctl is not installed: these tests create broker users with it")
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    output = (result.stdout + result.stderr).strip()
    if result.returncode and any(sign in output for sign in NOT_ALLOWED_TO_RUN):
        pytest.skip(f"rabbitmqctl may not be run here (run the tests as root): {output[:200]}")
    if result.returncode and check:
        raise RuntimeError(f"rabbitmqctl {args[1]} failed: {output[:500]}")


def follows(follower: str) -> dict[str, Collection[str]]:
    """The event topics ``follower`` (an application name) handles, by leader: its queue's bindings."""
    return {leader: topics for (leader, name), topics in SUBSCRIPTIONS.items() if name == follower}


def application(service: str) -> str:
    return str(BY_SERVICE[service].name)


def leaders(service: str) -> list[str]:
    return [application(leader) for leader in BY_SERVICE[service].follows]


def key_to(leader: str, follower: str) -> str:
    """A routing key of ``leader``'s that ``follower``'s queue takes (both application names)."""
    return binding_keys(leader, follows(follower)[leader])[0]


@dataclass
class Secured:
    """The system declared by the admin, and one user per service with least privilege."""

    vhost: str
    topology: Topology
    admin: AbstractConnection
    passwords: dict[str, str]
    followers: dict[str, FollowerQueues] = field(default_factory=dict)
    connections: list[AbstractConnection] = field(default_factory=list)

    def user(self, service: str) -> str:
        return f"{self.topology.prefix}.{service}"

    async def connect(self, service: str) -> AbstractConnection:
        connection = await aiormq.connect(
            f"amqp://{quote(self.user(service), safe='')}:{self.passwords[service]}@{services.RABBITMQ_HOST}:"
            f"{services.RABBITMQ_PORT}/{quote(self.vhost, safe='')}")
        self.connections.append(connection)
        return connection

    async def clean_up(self) -> None:
        for connection in self.connections:
            await connection.close()
        channel = await self.admin.channel()
        for queues in self.followers.values():
            for queue in (*queues.consumed, *queues.retries, queues.dead_letters):
                await channel.queue_delete(queue)
            if queues.partitions:
                await channel.exchange_delete(queues.main)
        await channel.exchange_delete(self.topology.exchange)
        await self.admin.close()


def create_user(secured: Secured, service: str) -> None:
    rabbitmqctl(["rabbitmqctl", "add_user", secured.user(service), secured.passwords[service]])
    permissions = (console_permissions(secured.topology, [application(s) for s in SERVICES], vhost=secured.vhost)
                   if service == CONSOLE else
                   service_permissions(secured.topology, service, BY_SERVICE[service].follows, vhost=secured.vhost))
    for command in rabbitmqctl_commands(permissions):
        rabbitmqctl(command)


@pytest.fixture
async def secured(rabbitmq_vhost: str, request: pytest.FixtureRequest) -> AsyncIterator[Secured]:
    """``request.param`` (indirect) is the number of partitions per follower (1 unless given)."""
    topology = Topology(prefix=f"t{uuid.uuid4().hex[:10]}", delays_ms=TEST_DELAYS_MS,
                        partitions=getattr(request, "param", 1))
    admin = await aiormq.connect(services.amqp_url(rabbitmq_vhost))
    users = (*SERVICES, CONSOLE)
    secured = Secured(rabbitmq_vhost, topology, admin, {user: secrets.token_hex(16) for user in users})
    try:
        await asyncio.gather(*(asyncio.to_thread(create_user, secured, user) for user in users))
        secured.followers = await declare_system(await admin.channel(), topology, SYSTEM.edges)
        yield secured
    finally:
        await secured.clean_up()
        await asyncio.gather(*(asyncio.to_thread(rabbitmqctl, ["rabbitmqctl", "delete_user", secured.user(user)],
                                                 False) for user in users))


async def publish(channel: AbstractChannel, exchange: str, routing_key: str, body: bytes = b"event",
                  headers: dict[str, Any] | None = None) -> None:
    """Publish, confirmed and routed to some queue (``mandatory``), or raise."""
    await channel.basic_publish(body, exchange=exchange, routing_key=routing_key, mandatory=True,
                                properties=Basic.Properties(headers=headers or {}))


async def take(channel: AbstractChannel, *queues: str) -> DeliveredMessage:
    """The next message of any of ``queues`` (``basic.get``, acked), waiting for one to arrive."""
    async def get() -> DeliveredMessage | None:
        for queue in queues:
            message = await channel.basic_get(queue, no_ack=True)
            if not isinstance(message.delivery, Basic.GetEmpty):
                return message
        return None

    message: DeliveredMessage = await eventually_async(get, timeout=5, what=f"a message in {queues}")
    return message


async def refusal(connection: AbstractConnection, operation: Callable[[AbstractChannel], Awaitable[Any]]) -> str:
    """The broker's ACCESS_REFUSED (403) reply to ``operation`` on a fresh channel, ``""`` if it allowed it."""
    channel = await connection.channel(publisher_confirms=True)
    try:
        await operation(channel)
        await channel.basic_qos(prefetch_count=1)  # a round trip: a refused publish has closed the channel by now
    except ChannelAccessRefused as error:
        return str(error.args[0])
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
    return ""


async def test_a_service_s_user_can_do_all_its_follower_and_relay_need(secured):
    topology = secured.topology
    scheduling = await (await secured.connect("scheduling")).channel(publisher_confirms=True)
    booking = await (await secured.connect("booking")).channel(publisher_confirms=True)

    # each declares its own follower (queue, retries, DLQ) and binds its leaders' events, by topic: the
    # admin's catch-all <leader>.# bindings are removed (an unbind is checked like a bind)
    await scheduling.exchange_declare(topology.exchange, passive=True)  # no configure on it needed
    queues = await declare_follower(scheduling, topology, "Scheduling", leaders("scheduling"), follows("Scheduling"))
    await declare_follower(booking, topology, "Booking", leaders("booking"), follows("Booking"))

    # each relay publishes its own events, which reach the other's queue
    await publish(scheduling, topology.exchange, key_to("Scheduling", "Booking"))
    await publish(booking, topology.exchange, key_to("Booking", "Scheduling"), body=b"saga event")
    assert (await take(booking, secured.followers["Booking"].main)).routing_key == key_to("Scheduling", "Booking")

    # the scheduling user consumes its queue
    arrived: asyncio.Queue[DeliveredMessage] = asyncio.Queue()
    await scheduling.basic_consume(queues.main, arrived.put, no_ack=True)
    assert (await asyncio.wait_for(arrived.get(), 5)).body == b"saga event"

    # republishes to its retry queue through the default exchange, and the TTL brings it back
    await publish(scheduling, "", queues.retries[0], body=b"retried")
    assert (await asyncio.wait_for(arrived.get(), 5)).body == b"retried"

    # dead-letters to its DLQ, and re-drives it back to its queue (the DLQ tool), or purges it
    await publish(scheduling, "", queues.dead_letters, body=b"dead letter")
    dead_letters = DeadLetterQueue(scheduling.connection, queues)
    assert await dead_letters.redrive_all() == 1
    assert (await asyncio.wait_for(arrived.get(), 5)).body == b"dead letter"
    await publish(scheduling, "", queues.dead_letters, body=b"dead letter")
    assert await dead_letters.purge() == 1


async def test_a_service_s_user_is_refused_all_that_is_not_its_own(secured):
    topology, events = secured.topology, secured.topology.exchange
    scheduling = await secured.connect("scheduling")
    own, other = secured.followers["Scheduling"], secured.followers["Booking"]
    refused = {
        "publish another service's event": lambda ch: publish(ch, events, key_to("Booking", "Scheduling")),
        "publish a third service's event": lambda ch: publish(ch, events, "consultations.Consultation.Requested"),
        "declare the events exchange": lambda ch: ch.exchange_declare(events, exchange_type="topic", durable=True),
        "delete the events exchange": lambda ch: ch.exchange_delete(events),
        "declare another service's follower": lambda ch: declare_follower(ch, topology, "Booking", leaders("booking")),
        "bind another service's queue": lambda ch: ch.queue_bind(other.main, events, routing_key="booking.Any"),
        "consume another service's queue": lambda ch: ch.basic_consume(other.main, lambda message: None),
        "take from another service's DLQ": lambda ch: ch.basic_get(other.dead_letters),
        "purge another service's DLQ": lambda ch: ch.queue_purge(other.dead_letters),
        "delete another service's queue": lambda ch: ch.queue_delete(other.main),
        "bind its queue to a non-leader's event": lambda ch: ch.queue_bind(
            own.main, events, routing_key="consultations.Consultation.Requested"),
        "bind its queue to its own events": lambda ch: ch.queue_bind(own.main, events, routing_key="scheduling.#"),
        "bind its queue to every event": lambda ch: ch.queue_bind(own.main, events, routing_key="#"),
    }
    replies = {what: await refusal(scheduling, operation) for what, operation in refused.items()}
    assert [what for what, reply in replies.items() if "ACCESS_REFUSED" not in reply] == []

    # the booking user binds its leaders' events (test above), never another service's
    booking = await secured.connect("booking")
    assert "ACCESS_REFUSED" in await refusal(booking, lambda ch: ch.queue_bind(
        secured.followers["Booking"].main, events, routing_key="registry.#"))

    # allowed without configure: a passive declare of the exchange (of any queue, too)
    assert await refusal(scheduling, lambda ch: ch.exchange_declare(events, passive=True)) == ""
    # the known limit: write on amq.default reaches any queue by name, another service's too
    assert await refusal(scheduling, lambda ch: publish(ch, "", other.dead_letters)) == ""


@pytest.mark.parametrize("secured", [1, 2], indirect=True)
async def test_the_console_s_user_reads_redrives_and_purges_dead_letters_and_nothing_else(secured):
    admin = await secured.admin.channel(publisher_confirms=True)
    booking = secured.followers["Booking"]
    desk = DeadLetterDesk(lambda: secured.connect(CONSOLE), {s: secured.followers[application(s)] for s in SERVICES})
    await publish(admin, "", booking.dead_letters, body=b"dead letter")
    dead_letters = await desk.queue("booking")
    assert await dead_letters.count() == 1
    assert [letter.body for letter in await dead_letters.list_messages()] == [b"dead letter"]
    assert await dead_letters.redrive_all() == 1  # to its queue, or through its exchange to a partition
    assert (await take(admin, *booking.consumed)).body == b"dead letter"
    await publish(admin, "", booking.dead_letters, body=b"dead letter")
    assert await dead_letters.purge() == 1

    console, events = await secured.connect(CONSOLE), secured.topology.exchange
    refused = {
        "consume a follower's queue": lambda ch: ch.basic_get(booking.consumed[0]),
        "publish an event": lambda ch: publish(ch, events, key_to("Booking", "Scheduling")),
        "declare a queue": lambda ch: ch.queue_declare(f"{secured.topology.prefix}.console-own", durable=True),
        "delete a DLQ": lambda ch: ch.queue_delete(booking.dead_letters),
        "bind a queue": lambda ch: ch.queue_bind(booking.dead_letters, events, routing_key="booking.#"),
        "take from a retry queue": lambda ch: ch.basic_get(booking.retries[0]),
    }
    replies = {what: await refusal(console, operation) for what, operation in refused.items()}
    assert [what for what, reply in replies.items() if "ACCESS_REFUSED" not in reply] == []
    await desk.close()


@pytest.mark.parametrize("secured", [2], indirect=True)
async def test_a_partitioned_follower_s_exchange_and_partitions_are_its_own(secured):
    topology, events = secured.topology, secured.topology.exchange
    configure = service_permissions(topology, "scheduling", ["booking"]).configure
    own = topology.queues("Scheduling")
    assert all(re.fullmatch(configure, name) for name in (own.main, *own.partitions, *own.retries, own.dead_letters))

    # the scheduling user declares its consistent-hash exchange and partitions, bound to its leaders' events
    scheduling = await (await secured.connect("scheduling")).channel(publisher_confirms=True)
    queues = await declare_follower(scheduling, topology, "Scheduling", leaders("scheduling"), follows("Scheduling"))
    booking = await (await secured.connect("booking")).channel(publisher_confirms=True)
    await publish(booking, events, key_to("Booking", "Scheduling"), headers={ORDERING_KEY: "saga-1"})
    assert (await take(scheduling, *queues.partitions)).routing_key == key_to("Booking", "Scheduling")

    # re-drives a dead letter through its own exchange, back to a partition
    await publish(scheduling, "", queues.dead_letters, headers={ORDERING_KEY: "saga-1"})
    assert await DeadLetterQueue(scheduling.connection, queues).redrive_all() == 1
    await take(scheduling, *queues.partitions)

    # and may not use another service's exchange or partitions
    other = secured.followers["Booking"]
    assert "ACCESS_REFUSED" in await refusal(scheduling.connection, lambda ch: publish(ch, other.main, ""))
    assert "ACCESS_REFUSED" in await refusal(scheduling.connection, lambda ch: ch.basic_get(other.partitions[0]))
