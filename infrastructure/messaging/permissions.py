"""Least privilege on the broker: one RabbitMQ user per service, limited to its own queues and events.

What RabbitMQ (3.10) checks, as established against a real broker. A refusal closes the channel with
``ACCESS_REFUSED`` (403); permission regexes are unanchored, so every pattern here is anchored::

    operation                                   vhost permission (resource)         topic permission
    exchange.declare, active (even if it exists) configure (exchange)               -
    exchange.declare, passive                    none                               -
    exchange.delete                              configure (exchange)               -
    queue.declare, active (even if it exists)    configure (queue)                  -
      with x-dead-letter-exchange DLX            + read (queue), + write (DLX;      -
                                                 ``""`` is checked as amq.default)
    queue.declare, passive                       none                               -
    queue.delete                                 configure (queue)                  -
    queue.purge, basic.get, basic.consume        read (queue)                       -
    queue.bind / queue.unbind                    write (queue), read (exchange)     read: the binding key
    exchange.bind / exchange.unbind              write (destination),               read: the binding key
                                                 read (source)                      (source a topic exchange)
    basic.publish                                write (exchange; ``""`` is         write: the routing key
                                                 checked as amq.default)            (topic exchanges only)

Topic permissions are set per user and exchange (``rabbitmqctl set_topic_permissions``) and apply only
to topic exchanges: the consistent-hash exchange of a partitioned follower and the default exchange
are not checked against them. A user without topic permissions on an exchange may use any key. An
unbind is checked like a bind, so a follower that drops its ``<leader>.#`` binding needs topic read
on that key too. The broker's own dead-lettering (a retry queue's TTL, a rejected message) checks
nothing.

So a service's user gets (``service_permissions``; the operations console's: ``console_permissions``):

* configure: its own names only (``<prefix>.<service>``, its retry queues, DLQ and partitions): it
  declares its own follower, never the events exchange (an admin step declares that; a passive
  declare needs no permission) nor another service's queues;
* write: its own names, ``<prefix>.events`` (its relay) and ``amq.default`` (retries and dead
  letters are republished through the default exchange, and its queues dead-letter to it);
* read: its own names and ``<prefix>.events`` (to bind its queue to it);
* topic write on ``<prefix>.events``: ``<service>.`` keys only, its own events;
* topic read on ``<prefix>.events``: its leaders' keys only (none for a service that follows none).

Known limits: write on ``amq.default`` reaches *any* queue of the vhost by name (RabbitMQ checks only
the exchange), so a service can put a message into another service's queue through the default
exchange; and a passive declare tells anyone whether a queue exists, and its message count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from infrastructure.messaging.topology import Topology

DEFAULT_EXCHANGE = "amq.default"
"""The name RabbitMQ checks permissions against for the default exchange ``""``."""
NOTHING = "^$"
"""A vhost permission that matches no resource (no queue or exchange is named ``""``)."""
NO_KEY = "(?!)"
"""A topic permission that matches no routing or binding key, not even the empty one."""


@dataclass(frozen=True)
class BrokerPermissions:
    """One user's permissions in one vhost, and its topic permissions on one (topic) exchange."""

    user: str
    vhost: str
    configure: str
    write: str
    read: str
    exchange: str
    topic_write: str
    topic_read: str


def service_permissions(topology: Topology, service: str, leaders: Iterable[str], *,
                        vhost: str = "/") -> BrokerPermissions:
    """The least a service needs: its own queues, publishing its own events, binding its leaders' keys.

    A service that follows no leader has no queues: it gets no configure or read permission at all,
    and write on the events exchange only."""
    leader_names = sorted({leader.lower() for leader in leaders})
    events = re.escape(topology.exchange)
    if leader_names:
        own = own_names(topology, service)
        configure, write, read = _any_of(own), _any_of(own, events, re.escape(DEFAULT_EXCHANGE)), _any_of(own, events)
        topic_read = f"^(?:{'|'.join(re.escape(leader) for leader in leader_names)})\\."
    else:
        configure, write, read, topic_read = NOTHING, _any_of(events), NOTHING, NO_KEY
    return BrokerPermissions(user=f"{topology.prefix}.{service}", vhost=vhost, configure=configure,
                             write=write, read=read, exchange=topology.exchange,
                             topic_write=f"^{re.escape(service.lower())}\\.", topic_read=topic_read)


def console_permissions(topology: Topology, followers: Iterable[str], *, vhost: str = "/") -> BrokerPermissions:
    """The operations console's user: it reads and purges the followers' dead letters and re-drives them
    (through the default exchange to a follower's queue, or through a partitioned follower's exchange); it
    declares nothing (a passive declare needs no permission) and uses no routing key of the events exchange."""
    queues = [topology.queues(follower) for follower in sorted(followers)]
    dead_letters = [re.escape(q.dead_letters) for q in queues]
    inboxes = [re.escape(q.main) for q in queues]
    return BrokerPermissions(user=f"{topology.prefix}.console", vhost=vhost, configure=NOTHING,
                             write=_any_of(re.escape(DEFAULT_EXCHANGE), *inboxes), read=_any_of(*dead_letters),
                             exchange=topology.exchange, topic_write=NO_KEY, topic_read=NO_KEY)


def own_names(topology: Topology, service: str) -> str:
    """An (unanchored) pattern of every name a service's follower has: its queue or consistent-hash
    exchange, partitions, retry queues (any delay) and DLQ."""
    queues = topology.queues(service)
    dead_letters = re.escape(queues.dead_letters.removeprefix(queues.main))
    return f"{re.escape(queues.main)}(?:{dead_letters}|\\.retry\\.[0-9]+ms|\\.p[0-9]+)?"


def rabbitmqctl_commands(permissions: BrokerPermissions) -> list[list[str]]:
    """The ``rabbitmqctl`` commands (each an argument list, the program first) that grant ``permissions``
    to an existing user: ``set_permissions`` and ``set_topic_permissions``."""
    user, vhost = permissions.user, permissions.vhost
    return [
        ["rabbitmqctl", "set_permissions", "-p", vhost, user,
         permissions.configure, permissions.write, permissions.read],
        ["rabbitmqctl", "set_topic_permissions", "-p", vhost, user,
         permissions.exchange, permissions.topic_write, permissions.topic_read],
    ]


def _any_of(*patterns: str) -> str:
    return f"^(?:{'|'.join(patterns)})$"
