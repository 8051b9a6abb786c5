"""Queue depths for ``clinic_amqp_queue_depth``: a passive declare per queue, periodically.

A passive ``queue.declare`` answers with the number of messages ready in the queue and
changes nothing; on a queue that does not exist (yet) the broker closes the channel, so
the sampler keeps a channel of its own and opens a new one on the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection

from infrastructure.observability.metrics import Metrics

log = logging.getLogger(__name__)
QUEUE_DEPTH_SECONDS = 5.0


class QueueDepthSampler:
    """Measures ``queues`` on the current broker connection every ``interval`` seconds."""

    def __init__(self, metrics: Metrics, queues: Sequence[str], interval: float = QUEUE_DEPTH_SECONDS) -> None:
        self.metrics = metrics
        self.queues = tuple(queues)
        self.interval = interval
        self._channel: AbstractChannel | None = None

    async def measure(self, connection: AbstractConnection) -> dict[str, int]:
        """One pass: each queue's ready messages, also recorded in ``metrics``."""
        if self._channel is None or self._channel.is_closed:
            self._channel = await connection.channel()
        depths = {}
        for queue in self.queues:
            declared = await self._channel.queue_declare(queue, passive=True)
            depths[queue] = declared.message_count or 0
            self.metrics.queue_depth(queue, depths[queue])
        return depths

    async def run(self, connection: Callable[[], AbstractConnection | None], stop: asyncio.Event) -> None:
        """Until ``stop``: measure on ``connection()`` whenever it is open; failures are logged, not raised."""
        while not stop.is_set():
            current = connection()
            if current is not None and not current.is_closed:
                try:
                    await self.measure(current)
                except (aiormq.exceptions.AMQPError, ConnectionError) as error:
                    log.warning("could not measure the queue depths: %r", error)
                    self._channel = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
