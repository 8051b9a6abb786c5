"""``clinic broker setup`` and ``clinic broker permissions``: the broker's exchange and queues, and
what each service's own broker user may do (docs/security.md)."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys

import aiormq

from application.bootstrap import SYSTEM
from application.services import broker_tls, broker_topology, broker_users, queue_bindings
from application.settings import Settings
from infrastructure.messaging.connection import connect
from infrastructure.messaging.permissions import rabbitmqctl_commands
from infrastructure.messaging.topology import FollowerQueues, declare_system
from interfaces.cli.main import settings


def run_setup(args: argparse.Namespace) -> int:
    """Declare the exchange and every follower's queues (idempotent), as the broker's administrator."""
    config = settings()
    try:
        queues = asyncio.run(_declare(config))
    except OSError as error:
        print(f"clinic: error: cannot reach the broker: {error}", file=sys.stderr)
        return 1
    except aiormq.exceptions.AMQPError as error:
        print(f"clinic: error: the broker refused: {error} (run this as the broker's administrator)", file=sys.stderr)
        return 1
    print(f"declared {broker_topology(config).exchange}")
    for follower in queues.values():
        print(f"declared {', '.join((*follower.consumed, *follower.retries, follower.dead_letters))}")
    return 0


async def _declare(config: Settings) -> dict[str, FollowerQueues]:
    connection = await connect(config.amqp_url, broker_tls(config))
    try:
        return await declare_system(await connection.channel(), broker_topology(config), SYSTEM.edges,
                                    queue_bindings(config))
    finally:
        await connection.close()


def run_permissions(args: argparse.Namespace) -> int:
    """Print the ``rabbitmqctl`` commands that give each service's user (made first with
    ``rabbitmqctl add_user``) exactly what it needs."""
    for service, permissions in broker_users(settings(), vhost=args.vhost).items():
        print(f"# {service}: user {permissions.user}")
        for command in rabbitmqctl_commands(permissions):
            print(shlex.join(command))
    return 0
