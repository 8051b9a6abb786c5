"""A real RabbitMQ for each test: its own vhost per test session, its own prefix per test.

The vhost is created with ``rabbitmqctl`` and deleted at the end of the session; where
``rabbitmqctl`` cannot be used (not root, remote broker) the default vhost is used and
each test deletes its own exchange and queues. Tests are ``async`` (anyio's plugin).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID

import aiormq
import pytest
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pamqp.commands import Basic

from application.consultations import ConsultationsApplication
from application.settings import Settings
from infrastructure.messaging.topology import FollowerQueues, Topology, declare_exchange, declare_follower
from process_managers.booking import BookingProcessManager
from tests import services
from tests.kit import FakeRegistry

TEST_DELAYS_MS = (50, 100)
START = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def rabbitmq_vhost() -> Iterator[str]:
    """A fresh vhost for this session (deleted after), or ``/`` when rabbitmqctl is unavailable."""
    services.require_rabbitmq()
    name = f"clinic-test-{uuid.uuid4().hex[:8]}"
    user = services.RABBITMQ_USER
    if not (_rabbitmqctl("add_vhost", name) and _rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")):
        yield "/"
        return
    yield name
    _rabbitmqctl("delete_vhost", name)


def _rabbitmqctl(*args: str) -> bool:
    if shutil.which("rabbitmqctl") is None:
        return False
    return subprocess.run(["rabbitmqctl", *args], capture_output=True, timeout=60).returncode == 0


class Broker:
    """One test's view of RabbitMQ: a connection, a unique prefix, and clean-up."""

    def __init__(self, connection: AbstractConnection, topology: Topology) -> None:
        self.connection = connection
        self.topology = topology
        self.followers: list[FollowerQueues] = []

    async def channel(self) -> AbstractChannel:
        return await self.connection.channel(publisher_confirms=True)

    async def declare(self, follower_name: str, *leader_names: str) -> FollowerQueues:
        channel = await self.channel()
        await declare_exchange(channel, self.topology)
        queues = await declare_follower(channel, self.topology, follower_name, leader_names)
        self.followers.append(queues)
        await channel.close()
        return queues

    async def count(self, queue: str) -> int:
        """Messages ready in ``queue`` (not counting unacked ones)."""
        channel = await self.channel()
        declare_ok = await channel.queue_declare(queue, passive=True)
        await channel.close()
        return declare_ok.message_count

    async def drain(self, queue: str) -> list[DeliveredMessage]:
        """Take (and ack) every message now in ``queue``, in order."""
        channel = await self.channel()
        messages = []
        while not isinstance((message := await channel.basic_get(queue, no_ack=True)).delivery, Basic.GetEmpty):
            messages.append(message)
        await channel.close()
        return messages

    async def clean_up(self) -> None:
        channel = await self.channel()
        for queues in self.followers:
            for queue in (*queues.consumed, *queues.retries, queues.dead_letters):
                await channel.queue_delete(queue)
            if queues.partitions:
                await channel.exchange_delete(queues.main)
        await channel.exchange_delete(self.topology.exchange)
        await channel.close()


@pytest.fixture
async def broker(rabbitmq_vhost: str) -> AsyncIterator[Broker]:
    url = (f"amqp://{services.RABBITMQ_USER}:{services.RABBITMQ_PASSWORD}@{services.RABBITMQ_HOST}:"
           f"{services.RABBITMQ_PORT}/{quote(rabbitmq_vhost, safe='')}")
    connection = await aiormq.connect(url)
    broker = Broker(connection, Topology(prefix=f"t{uuid.uuid4().hex[:10]}", delays_ms=TEST_DELAYS_MS))
    yield broker
    await broker.clean_up()
    await connection.close()


class FlakyBooking(BookingProcessManager):
    """The booking process manager, made to fail on chosen consultations.

    ``failures[consultation_id]`` is how many more deliveries of its events fail (``None``: always);
    ``attempts`` counts the deliveries tried (a batch the delivery engine splits runs a failing event
    more than once: it counts once it is tried alone, or succeeds); while ``gate`` is clear,
    processing waits for it (to hold a message in flight).
    """

    def __init__(self, env: Any = None) -> None:
        super().__init__(env)
        self.failures: dict[UUID, int | None] = {}
        self.attempts: dict[UUID, int] = {}
        self.registry = FakeRegistry()
        self.gate = threading.Event()
        self.gate.set()
        self._alone = False

    def record_batch(self, jobs: Any, exact: bool = True) -> Any:
        self._alone = len(jobs) == 1
        return super().record_batch(jobs, exact)

    def _run_policy(self, job: Any) -> Any:  # one event's processing inside record_batch
        key = job.event.originator_id
        left = self.failures.get(key, 0)
        failing = left is None or left > 0
        if self._alone or not failing:
            self.attempts[key] = self.attempts.get(key, 0) + 1
        self.gate.wait(timeout=30)
        if failing:
            if self._alone:
                self.failures[key] = None if left is None else left - 1
            raise RuntimeError(f"simulated failure on {key}")
        return super()._run_policy(job)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(persistence="sqlite", data_dir=tmp_path / "data")


@pytest.fixture
def consultations(settings: Settings) -> Iterator[ConsultationsApplication]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = ConsultationsApplication(env=settings.eventsourcing_env(ConsultationsApplication.name))
    yield app
    app.close()


@pytest.fixture
def booking(settings: Settings) -> Iterator[FlakyBooking]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = FlakyBooking(env=settings.eventsourcing_env(BookingProcessManager.name))
    yield app
    app.close()


def request_consultations(app: ConsultationsApplication, count: int) -> list[UUID]:
    """``count`` consultation requests (one notification each), at distinct times."""
    return [app.request_consultation(uuid.uuid4(), uuid.uuid4(), START + timedelta(hours=i), "checkup")
            for i in range(count)]


class MemoryPosition:
    """A relay position that forgets: a second relay publishes everything again."""

    def __init__(self) -> None:
        self.value = 0

    def get(self) -> int:
        return self.value

    def save(self, notification_id: int) -> None:
        self.value = notification_id
