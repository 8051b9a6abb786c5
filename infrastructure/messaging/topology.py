"""The broker's shape: one topic exchange, and per follower its queue (or partitions), retry queues, a DLQ.

Names (``prefix`` isolates one deployment or test run from another)::

    <prefix>.events                      durable topic exchange every relay publishes to
    <prefix>.<follower>                  the follower's durable queue, bound to its leaders
    <prefix>.<follower>.retry.<ms>ms     one per delay level: TTL, then back to the queue
    <prefix>.<follower>.dlq              dead letters, kept until an operator acts

With ``partitions`` above 1 (several workers per context), the follower's queue is split so that
each partition is consumed by one worker at a time and keeps its order::

    <prefix>.<follower>                  a consistent-hash exchange (RabbitMQ's
                                         rabbitmq_consistent_hash_exchange plugin), bound to the
                                         events exchange with the follower's routing keys, hashing
                                         the ``x-ordering-key`` header the relay sets
    <prefix>.<follower>.p<i>             partition i: a durable single-active-consumer queue

The ordering key is the event's saga id, else its aggregate's id: every event of one booking saga,
and every event of one aggregate outside a saga, lands in one partition, in order. Retries and
re-driven dead letters go back through the follower's exchange, so to the same partition.

A routing key is ``<leader>.<event class qualname>``, e.g.
``consultations.Consultation.Requested``. A follower binds one key per event its policy
handles (``topics``, per leader), so the broker drops the events it would only ignore;
without ``topics`` for a leader it binds ``<leader>.#`` (every event of that leader). Each retry queue holds one delay only (a per-message TTL in a
shared queue would stall short delays behind long ones) and dead-letters through
the default exchange straight back to the follower's queue. The delay is part of
the retry queue's name, so changing the levels declares new queues instead of
clashing with the arguments of old ones.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from aiormq.abc import AbstractChannel
from aiormq.exceptions import ChannelNotFoundEntity
from pamqp.common import FieldTable


class TopologyMissingError(RuntimeError):
    """The exchange a service with its own broker user expects is not there (the setup step has not run)."""


DEFAULT_PREFIX = "clinic"
DEFAULT_DELAYS_MS = (1_000, 5_000, 30_000)
ORDERING_KEY = "x-ordering-key"
"""The header a partitioned follower's exchange hashes: the saga id, else the aggregate id."""


def routing_key(leader_name: str, topic: str) -> str:
    """``consultations.Consultation.Requested`` for topic ``domain.consultation:Consultation.Requested``."""
    return f"{leader_name.lower()}.{topic.rpartition(':')[2]}"


def binding_key(leader_name: str) -> str:
    """The binding that takes every event of one leader."""
    return f"{leader_name.lower()}.#"


def binding_keys(leader_name: str, topics: Collection[str] | None) -> list[str]:
    """The keys a follower binds for one leader: one per event topic it handles, or ``<leader>.#`` (``None``)."""
    if topics is None:
        return [binding_key(leader_name)]
    return sorted({routing_key(leader_name, topic) for topic in topics})


@dataclass(frozen=True)
class FollowerQueues:
    """The queues of one follower: where it consumes, retries (per delay level) and dead-letters.

    ``main`` names the follower's queue, or (partitioned) its exchange; ``partitions`` are the queues
    it consumes (``(main,)`` unless partitioned); a message goes back in (a retry, a re-drive) by
    ``inbox``: an exchange and routing key that lead it to the queue it belongs to."""

    follower: str
    main: str
    retries: tuple[str, ...]
    dead_letters: str
    partitions: tuple[str, ...] = ()

    @property
    def consumed(self) -> tuple[str, ...]:
        """The queues the follower consumes."""
        return self.partitions or (self.main,)

    @property
    def inbox(self) -> tuple[str, str]:
        """``(exchange, routing key)`` that bring a message back to its queue (or partition)."""
        return (self.main, "") if self.partitions else ("", self.main)


@dataclass(frozen=True)
class Topology:
    """The names of one deployment's exchange and queues, its retry delays and partitions per follower."""

    prefix: str = DEFAULT_PREFIX
    delays_ms: tuple[int, ...] = DEFAULT_DELAYS_MS
    partitions: int = 1

    def __post_init__(self) -> None:
        if not self.delays_ms or any(delay <= 0 for delay in self.delays_ms):
            raise ValueError("delays_ms needs at least one positive delay")
        if self.partitions < 1:
            raise ValueError("partitions must be at least 1")

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.events"

    def queues(self, follower_name: str) -> FollowerQueues:
        main = f"{self.prefix}.{follower_name.lower()}"
        retries = tuple(f"{main}.retry.{delay}ms" for delay in self.delays_ms)
        partitions = tuple(f"{main}.p{i}" for i in range(self.partitions)) if self.partitions > 1 else ()
        return FollowerQueues(follower_name, main, retries, f"{main}.dlq", partitions)


async def declare_exchange(channel: AbstractChannel, topology: Topology) -> None:
    """Declare the durable topic exchange (idempotent)."""
    await channel.exchange_declare(topology.exchange, exchange_type="topic", durable=True)


async def declare_follower(channel: AbstractChannel, topology: Topology, follower_name: str,
                           leader_names: Iterable[str],
                           topics: Mapping[str, Collection[str]] | None = None) -> FollowerQueues:
    """Declare a follower's queue, its bindings, retry queues and DLQ (idempotent).

    ``topics`` maps a leader to the event topics the follower handles: one binding each. A leader
    missing from it is bound whole (``<leader>.#``); one bound by topic loses that catch-all binding
    (an earlier version's), so switching either way needs no manual step.
    """
    queues = topology.queues(follower_name)
    await channel.queue_declare(queues.dead_letters, durable=True)
    # Safety net: a message rejected without requeue goes to the DLQ, never to nowhere.
    if queues.partitions:
        await _declare_partitions(channel, topology, queues)
    else:
        await channel.queue_declare(queues.main, durable=True, arguments=_dead_letter_to(queues.dead_letters))
    bind, unbind = ((channel.exchange_bind, channel.exchange_unbind) if queues.partitions
                    else (channel.queue_bind, channel.queue_unbind))
    for leader_name in leader_names:
        keys = binding_keys(leader_name, None if topics is None else topics.get(leader_name))
        for key in keys:
            await bind(queues.main, topology.exchange, routing_key=key)
        if binding_key(leader_name) not in keys:
            await unbind(queues.main, topology.exchange, routing_key=binding_key(leader_name))
    exchange, routing_key = queues.inbox
    for delay, retry_queue in zip(topology.delays_ms, queues.retries, strict=True):
        arguments: FieldTable = {"x-message-ttl": delay, "x-dead-letter-exchange": exchange,
                     **({"x-dead-letter-routing-key": routing_key} if routing_key else {})}
        await channel.queue_declare(retry_queue, durable=True, arguments=arguments)
    return queues


async def _declare_partitions(channel: AbstractChannel, topology: Topology, queues: FollowerQueues) -> None:
    """The follower's consistent-hash exchange and its partitions, one active consumer each."""
    await channel.exchange_declare(queues.main, exchange_type=CONSISTENT_HASH, durable=True,
                                   arguments={"hash-header": ORDERING_KEY})
    for partition in queues.partitions:
        await channel.queue_declare(partition, durable=True, arguments={
            "x-single-active-consumer": True, **_dead_letter_to(queues.dead_letters)})
        await channel.queue_bind(partition, queues.main, routing_key="1")  # equal weights


CONSISTENT_HASH = "x-consistent-hash"


async def declare_system(channel: AbstractChannel, topology: Topology, edges: Iterable[tuple[str, str]],
                         topics: Mapping[tuple[str, str], Collection[str]] | None = None,
                         ) -> dict[str, FollowerQueues]:
    """Declare the exchange and every follower of ``(leader, follower)`` edges, e.g. ``SYSTEM.edges``.

    ``topics`` maps an edge to the event topics the follower handles from that leader (e.g.
    ``application.subscriptions.SUBSCRIPTIONS``); an edge missing from it is bound whole.
    """
    leaders: dict[str, list[str]] = {}
    for leader_name, follower_name in edges:
        leaders.setdefault(follower_name, []).append(leader_name)
    await declare_exchange(channel, topology)
    return {name: await declare_follower(channel, topology, name, names, _of_follower(topics, name))
            for name, names in leaders.items()}


async def declare_own(channel: AbstractChannel, topology: Topology, follower_name: str,
                      edges: Iterable[tuple[str, str]],
                      topics: Mapping[tuple[str, str], Collection[str]] | None = None) -> dict[str, FollowerQueues]:
    """What a service with its own broker user may declare: its own follower's queues (if it follows
    anyone), after checking that the exchange exists (a passive declare: ``clinic broker setup`` made it).
    Returns ``{follower_name: queues}``, or nothing for a context that follows none."""
    try:
        await channel.exchange_declare(topology.exchange, exchange_type="topic", passive=True)
    except ChannelNotFoundEntity as error:
        raise TopologyMissingError(f"the exchange {topology.exchange} does not exist: run `clinic broker setup` "
                                   "(as the broker's administrator) before the services") from error
    leaders = [leader for leader, follower in edges if follower == follower_name]
    if not leaders:
        return {}
    return {follower_name: await declare_follower(channel, topology, follower_name, leaders,
                                                  _of_follower(topics, follower_name))}


def _of_follower(topics: Mapping[tuple[str, str], Collection[str]] | None,
                 follower_name: str) -> dict[str, Collection[str]] | None:
    if topics is None:
        return None
    return {leader: handled for (leader, follower), handled in topics.items() if follower == follower_name}


def _dead_letter_to(queue: str) -> FieldTable:
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue}
