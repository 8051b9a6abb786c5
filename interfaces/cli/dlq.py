"""``clinic dlq``: look at, re-drive and purge a follower's dead letters."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiormq

from application.services import dead_letter_desk
from infrastructure.messaging.dlq import DeadLetter, DeadLetterNotFoundError, DeadLetterQueue
from interfaces.cli.main import settings

T = TypeVar("T")


def run_dlq(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_with_queue(args.follower, lambda dlq: _ACTIONS[args.dlq_command](dlq, args)))
    except DeadLetterNotFoundError as error:
        print(f"clinic: error: no dead letter with message id {error}", flush=True)
        return 1
    except OSError as error:
        print(f"clinic: error: cannot reach the broker: {error}", flush=True)
        return 1
    except aiormq.exceptions.AMQPError as error:
        print(f"clinic: error: the broker refused: {error} (is CLINIC_AMQP_PREFIX right?)", flush=True)
        return 1


async def _with_queue(follower: str, action: Callable[[DeadLetterQueue], Awaitable[T]]) -> T:
    desk = dead_letter_desk(settings())  # the console's too: one code path
    try:
        return await action(await desk.queue(follower))
    finally:
        await desk.close()


async def _list(dlq: DeadLetterQueue, args: argparse.Namespace) -> int:
    letters = await dlq.list_messages(limit=args.limit)
    if args.json:
        print(json.dumps([_summary(letter) for letter in letters], indent=2))
    else:
        print(f"{len(letters)} dead letter(s) in {dlq.queues.dead_letters}")
        for letter in letters:
            print(f"  {letter.message_id}  attempts={letter.attempts}  reason={letter.reason}  error={letter.error}")
    return 0


async def _show(dlq: DeadLetterQueue, args: argparse.Namespace) -> int:
    letter = await dlq.show(args.message_id)
    print(json.dumps({**_summary(letter), "headers": _plain(letter.headers),
                      "body": letter.body.decode("utf-8", errors="replace")}, indent=2))
    return 0


async def _redrive(dlq: DeadLetterQueue, args: argparse.Namespace) -> int:
    count = await (dlq.redrive_all() if args.all else dlq.redrive(args.message_id))
    print(f"re-drove {count} message(s) to {dlq.queues.main}")
    return 0


async def _purge(dlq: DeadLetterQueue, args: argparse.Namespace) -> int:
    if not args.yes:
        print("clinic: error: purge deletes every dead letter for good; add --yes to confirm", flush=True)
        return 2
    print(f"purged {await dlq.purge()} message(s) from {dlq.queues.dead_letters}")
    return 0


_ACTIONS: dict[str, Callable[[DeadLetterQueue, argparse.Namespace], Awaitable[int]]] = {
    "list": _list, "show": _show, "redrive": _redrive, "purge": _purge,
}


def _summary(letter: DeadLetter) -> dict[str, Any]:
    return {"message_id": letter.message_id, "reason": letter.reason, "error": letter.error,
            "attempts": letter.attempts, "routing_key": letter.routing_key}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
