"""Dead letters, for operators: each follower's count; its dead letters with why they are there (reason,
error, attempts), their headers and a payload preview; re-drive one or all (back to the follower's queue,
attempts reset); purge, once confirmed. The same operations as ``clinic dlq``, through the same code
(``infrastructure/messaging/dlq.py``): reading takes messages without acking them and hands them all back,
so looking loses nothing. Dead letters exist where a broker carries the events (distributed mode)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from domain.values import Role
from infrastructure.messaging.dlq import DeadLetter, DeadLetterDesk
from infrastructure.security.tokens import Principal
from interfaces.http.console.render import ConsoleController, page
from interfaces.http.console.session import PATH, console_of

SHOWN = 50
"""At most this many dead letters on a page (the oldest first: the queue's order)."""


def _desk(request: Request[Any, Any, Any]) -> DeadLetterDesk:
    desk = console_of(request).dead_letters
    if desk is None:
        raise RuntimeError("this console has no broker to read dead letters from")
    return desk


def _admin(operator: Principal) -> None:
    if not operator.has_role(Role.ADMIN):
        raise PermissionDeniedException("only an admin re-drives or purges dead letters; auditors read")


class ConsoleDeadLetters(ConsoleController):
    path = f"{PATH}/dead-letters"

    @get("/")
    async def overview(self, request: Request[Any, Any, Any], operator: NamedDependency[Principal]) -> Template:
        """Each follower and how many dead letters it has now."""
        desk = _desk(request)
        counts = {follower: await (await desk.queue(follower)).count() for follower in desk.followers}
        return page("dead_letters.html.j2", request, operator=operator, section="dead-letters", counts=counts)

    @get("/{follower:str}")
    async def letters(self, request: Request[Any, Any, Any], operator: NamedDependency[Principal],
                      follower: FromPath[str],
                      done: Annotated[Literal["redrive", "purge"] | None, QueryParameter(required=False)] = None,
                      count: Annotated[int | None, QueryParameter(ge=0, required=False)] = None) -> Template:
        """A follower's dead letters, oldest first, each whole (reason, error, attempts, re-drives, routing
        key, headers, the payload's start); an admin re-drives or purges them."""
        queue = await _desk(request).queue(follower)
        total = await queue.count()
        letters = await queue.list_messages(limit=SHOWN) if total else []
        return page("dead_letter_list.html.j2", request, operator=operator, section="dead-letters",
                    follower=follower, queue=queue.queues.dead_letters, total=total, letters=[_shown(letter)
                    for letter in letters], done=done, count=count, may_act=operator.has_role(Role.ADMIN))

    @post("/{follower:str}/{message_id:str}/redrive", status_code=303)
    async def redrive(self, request: Request[Any, Any, Any], operator: NamedDependency[Principal],
                      follower: FromPath[str], message_id: FromPath[str]) -> Redirect:
        """Send the dead letters with this message id back to the follower's queue, attempts reset (admins)."""
        _admin(operator)
        count = await (await _desk(request).queue(follower)).redrive(message_id)
        return _back(follower, "redrive", count)

    @post("/{follower:str}/redrive", status_code=303)
    async def redrive_all(self, request: Request[Any, Any, Any], operator: NamedDependency[Principal],
                          follower: FromPath[str]) -> Redirect:
        """Send every dead letter back to the follower's queue, attempts reset (admins)."""
        _admin(operator)
        return _back(follower, "redrive", await (await _desk(request).queue(follower)).redrive_all())

    @get("/{follower:str}/purge")
    async def confirm_purge(self, request: Request[Any, Any, Any], operator: NamedDependency[Principal],
                            follower: FromPath[str]) -> Template:
        """Ask the admin to confirm: purging deletes every dead letter for good."""
        _admin(operator)
        total = await (await _desk(request).queue(follower)).count()
        return page("dead_letter_purge.html.j2", request, operator=operator, section="dead-letters",
                    follower=follower, total=total)

    @post("/{follower:str}/purge", status_code=303)
    async def purge(self, request: Request[Any, Any, Any], operator: NamedDependency[Principal],
                    follower: FromPath[str]) -> Redirect:
        """Delete every dead letter of the follower (admins, after confirming)."""
        _admin(operator)
        return _back(follower, "purge", await (await _desk(request).queue(follower)).purge())


def _back(follower: str, done: str, count: int) -> Redirect:
    return Redirect(f"{PATH}/dead-letters/{follower}?done={done}&count={count}", status_code=303)


def _shown(letter: DeadLetter) -> dict[str, Any]:
    headers = {str(name): value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
               for name, value in letter.headers.items()}
    return {"letter": letter, "headers": sorted(headers.items()), "preview": letter.preview()}
