"""The console's pages: server-rendered templates; htmx (served from ``static/``) swaps the parts that change.

Every page needs a console session (``session.operator``); the API's bearer check and scope table do
not apply to them (``EXCLUDE_FROM_AUTH``, ``public``), and they are not in the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, ServerSentEvent, ServerSentEventMessage, Template

from application.audit import AuditQueryError
from application.views import SAGA_STATE_FILTERS, SagaFilter, SagaListing, SagaStateFilter
from domain.base import NotFoundError
from domain.booking_saga_table import OPEN_STATES
from domain.values import Role
from infrastructure.outages import cause
from infrastructure.security.tokens import Principal
from interfaces.http.console.reads import ConsoleReads
from interfaces.http.console.render import OPEN, ConsoleController, page
from interfaces.http.console.session import COOKIE, PATH, SESSION_SECONDS, SignInRequired, console_of
from interfaces.http.console.timeline import saga_timeline
from interfaces.http.problems import RETRY_AFTER_SECONDS, UNAVAILABLE_DETAIL
from interfaces.http.streams import KEEP_ALIVE, STREAM_HEADERS
from process_managers.booking import SagaStateError

log = logging.getLogger(__name__)


async def saga_filter(
        in_state: Annotated[SagaStateFilter | None, QueryParameter(name="state", required=False)] = None,
        correlation: Annotated[str | None, QueryParameter(required=False, max_length=128)] = None,
        patient: Annotated[UUID | None, QueryParameter(required=False)] = None,
        doctor: Annotated[UUID | None, QueryParameter(required=False)] = None,
        since: Annotated[date | None, QueryParameter(required=False)] = None,
        until: Annotated[date | None, QueryParameter(required=False)] = None) -> SagaFilter:
    """The sagas a list page asks for, from its query string."""
    return SagaFilter(in_state, correlation or None, patient, doctor, since, until)


SAGA_LISTS = {**ConsoleController.dependencies, "wanted": Provide(saga_filter)}
"""The console's dependencies, and the filter of a list of sagas."""


class ConsolePages(ConsoleController):
    path = PATH
    dependencies = SAGA_LISTS  # noqa: RUF012 - Litestar's

    @get("/sagas", sync_to_thread=True)
    def sagas(self, request: Request[Any, Any, Any], reads: NamedDependency[ConsoleReads],
              operator: NamedDependency[Principal], wanted: NamedDependency[SagaFilter],
              cursor: Annotated[str | None, QueryParameter(required=False)] = None) -> Template:
        """Sagas newest first: by state (open, stuck past its deadline or on one step, or how it ended), by the
        correlation id of the request that started it, by patient, by doctor, by the day it started. The
        rows follow the sagas as they change: told by server-sent events, the page fetches them again
        (an htmx request, ``HX-Request``: the rows alone)."""
        rows = _rows(request, reads, wanted, cursor)
        if request.headers.get("hx-request") == "true":
            return page("sagas_rows.html.j2", request, **rows)
        return page("sagas.html.j2", request, operator=operator, filters=SAGA_STATE_FILTERS, **rows)

    @get("/sagas/{saga_id:uuid}", sync_to_thread=True)
    def saga(self, request: Request[Any, Any, Any], reads: NamedDependency[ConsoleReads],
             operator: NamedDependency[Principal], saga_id: FromPath[UUID],
             done: Annotated[Literal["retry-validation", "compensate"] | None, QueryParameter(
                 required=False)] = None) -> Template:
        """One saga: its steps on a timeline, the event behind each, and what an open one waits on; an admin
        may act on an open one."""
        timeline = saga_timeline(reads, saga_id, request.app.state.clock(), console_of(request).stuck_after)
        trace = console_of(request).trace_url(timeline.listing.trace_id)
        template = "saga_body.html.j2" if request.headers.get("hx-request") == "true" else "saga.html.j2"
        return page(template, request, operator=operator, saga=timeline, done=done and ACTIONS[done], trace=trace,
                    may_act=operator.has_role(Role.ADMIN) and timeline.listing.state in OPEN_STATES,
                    seen=saga_fingerprint(timeline.listing, timeline.steps))

    @get("/sagas/{saga_id:uuid}/{action:str}", sync_to_thread=True)
    def confirm(self, request: Request[Any, Any, Any], reads: NamedDependency[ConsoleReads],
                operator: NamedDependency[Principal], saga_id: FromPath[UUID], action: FromPath[str]) -> Template:
        """Ask the admin to confirm an action on the saga (nothing is done by following a link)."""
        _may_act(operator, action)
        timeline = saga_timeline(reads, saga_id, request.app.state.clock(), console_of(request).stuck_after)
        return page("confirm.html.j2", request, operator=operator, saga=timeline, action=action,
                    what=ACTIONS[action])

    @post("/sagas/{saga_id:uuid}/{action:str}", status_code=303, sync_to_thread=True)
    def act(self, reads: NamedDependency[ConsoleReads], operator: NamedDependency[Principal],
            saga_id: FromPath[UUID], action: FromPath[str]) -> Redirect:
        """Do the confirmed action, recorded with the admin as its actor; back to the saga's page."""
        _may_act(operator, action)
        reads.act(saga_id, action)
        return Redirect(f"{PATH}/sagas/{saga_id}?done={action}", status_code=303)


class ConsoleLive(ConsoleController):
    """What follows the sagas as they change: woken by the read models' change feed, beside the stores or
    through the API's own streams of saga changes."""

    path = PATH
    dependencies = SAGA_LISTS  # noqa: RUF012 - Litestar's

    @get("/sagas/changes")
    async def changes(self, request: Request[Any, Any, Any], reads: NamedDependency[ConsoleReads],
                      operator: NamedDependency[Principal], wanted: NamedDependency[SagaFilter],
                      cursor: Annotated[str | None, QueryParameter(required=False)] = None,
                      seen: Annotated[str | None, QueryParameter(required=False, max_length=64)] = None,
                      ) -> ServerSentEvent:
        """``event: sagas`` each time the sagas change, with a keep-alive comment every 15 s; ends after 5
        minutes (the browser reconnects). ``seen``: what the page shows (``rows_fingerprint``): told at once
        only if the rows differ from it now."""
        def shown() -> str:
            return rows_fingerprint(_rows(request, reads, wanted, cursor)["items"])

        return ServerSentEvent(_told("sagas", _unless_shown(reads.sagas_changes(), shown, seen)), headers=STREAM_HEADERS)

    @get("/sagas/{saga_id:uuid}/changes")
    async def saga_changes(self, reads: NamedDependency[ConsoleReads], operator: NamedDependency[Principal],
                           saga_id: FromPath[UUID], seen: Annotated[str | None, QueryParameter(
                               required=False, max_length=64)] = None) -> ServerSentEvent:
        """``event: saga`` each time this saga changes, with a keep-alive comment every 15 s; ends after 5
        minutes (the browser reconnects). ``seen``: what the page shows (``saga_fingerprint``)."""
        def shown() -> str:
            return saga_fingerprint(*reads.saga(saga_id))

        return ServerSentEvent(_told("saga", _unless_shown(reads.saga_changes(saga_id), shown, seen)),
                               headers=STREAM_HEADERS)


def saga_fingerprint(listing: SagaListing, steps: Sequence[Any]) -> str:
    """What a saga's page shows of it, in a few characters: its state, since when, and each step's."""
    shown = [listing.state, listing.waiting_since.isoformat(), *(f"{step.name}:{step.status}" for step in steps)]
    return hashlib.sha256("|".join(shown).encode()).hexdigest()[:16]


def rows_fingerprint(items: Sequence[SagaListing]) -> str:
    """What a list of sagas shows, in a few characters: each saga, its state and since when."""
    shown = [f"{saga.saga_id}:{saga.state}:{saga.waiting_since.isoformat()}" for saga in items]
    return hashlib.sha256("|".join(shown).encode()).hexdigest()[:16]


async def _unless_shown(moves: AsyncIterator[bool], shown: Callable[[], str], seen: str | None) -> AsyncIterator[bool]:
    """``moves``, but the first change told is passed over when the page already shows what is there now (a
    stream tells what it finds when it starts: a change since the page was drawn is not missed)."""
    first = True
    async for moved in moves:
        if moved and first:
            first = False
            if seen is not None and await asyncio.to_thread(shown) == seen:
                yield False
                continue
        yield moved


ACTIONS = {"retry-validation": "Ask the registry again now", "compensate": "Compensate now"}
"""What an admin may do to a saga, as the console words it (the API's ``retrySagaValidation``, ``compensateSaga``)."""


def _may_act(operator: Principal, action: str) -> None:
    if action not in ACTIONS:
        raise NotFoundError(f"no action {action!r} on a saga")
    if not operator.has_role(Role.ADMIN):
        raise PermissionDeniedException("only an admin acts on a saga; auditors read")


class ConsoleSignIn(Controller):
    """The development sign-in (embedded mode): the operator names themself and their role."""

    path = PATH
    opt = OPEN
    include_in_schema = False

    @get("/login", sync_to_thread=False)
    def form(self, request: Request[Any, Any, Any], error: Annotated[str | None, QueryParameter(
            required=False, max_length=100)] = None) -> Template:
        return page("login.html.j2", request, roles=[Role.ADMIN, Role.AUDITOR], error=error)

    @post("/login", status_code=303)
    async def sign_in(self, request: Request[Any, Any, Any]) -> Redirect:
        form = await request.form()
        sub, role = str(form.get("operator", "")).strip(), str(form.get("role", ""))
        if not sub or len(sub) > 64 or role not in (Role.ADMIN, Role.AUDITOR):
            return Redirect(f"{PATH}/login?error=name+yourself+and+pick+a+role", status_code=303)
        console = console_of(request)
        cookie = Cookie(key=COOKIE, value=console.session_token(sub, Role(role)), path=PATH, httponly=True,
                        samesite="strict", secure=console.secure_cookie, max_age=SESSION_SECONDS)
        return Redirect(console.home, status_code=303, cookies=[cookie])


class ConsoleEntrance(Controller):
    """Where operators come in (the console's root: its home, or signing in first) and how they leave
    (signing out, however they signed in: the session cookie is cleared)."""

    path = PATH
    opt = OPEN
    include_in_schema = False

    @get("/", sync_to_thread=False)
    def home(self, request: Request[Any, Any, Any]) -> Redirect:
        return Redirect(console_of(request).home)

    @post("/logout", status_code=303)
    async def sign_out(self) -> Redirect:
        return Redirect(f"{PATH}/login", status_code=303,
                        cookies=[Cookie(key=COOKIE, value="", path=PATH, httponly=True, samesite="strict", max_age=0)])



def _rows(request: Request[Any, Any, Any], reads: ConsoleReads, wanted: SagaFilter,
          cursor: str | None) -> dict[str, Any]:
    now, after = request.app.state.clock(), console_of(request).stuck_after
    page = reads.sagas(wanted, now, after, cursor, 25)
    return {"rows": [_row(saga, now, after) for saga in page.items], "items": page.items,
            "next_cursor": page.next_cursor, "wanted": wanted, "query": _query(wanted), "cursor": cursor,
            "seen": rows_fingerprint(page.items)}


async def _told(event: str, moves: AsyncIterator[bool]) -> AsyncIterator[ServerSentEventMessage]:
    """``event`` for each change, a keep-alive comment for each quiet spell; a source gone quiet for good (the
    API not answering) ends the stream, and the browser reconnects."""
    try:
        async for moved in moves:
            yield ServerSentEventMessage(event=event, data="changed") if moved else \
                KEEP_ALIVE
    except (ConnectionError, PermissionError, NotFoundError) as error:
        log.info("console stream of %s ended: %s", event, error)


def _query(wanted: SagaFilter) -> str:
    """The filter as the query string of a link (the next page keeps it)."""
    pairs = {"state": wanted.state, "correlation": wanted.correlation, "patient": wanted.patient,
             "doctor": wanted.doctor, "since": wanted.since, "until": wanted.until}
    return urlencode({name: str(value) for name, value in pairs.items() if value is not None})


def _row(saga: SagaListing, now: datetime, after: timedelta) -> dict[str, Any]:
    return {"saga": saga, "stuck": saga.stuck(now, after),
            "waiting": _duration(now - saga.waiting_since) if saga.open else "",
            "deadline_passed": saga.open and saga.state in OPEN_STATES and saga.deadline <= now}


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def signed_out(request: Request[Any, Any, Any], error: SignInRequired) -> Response[Any]:
    return Redirect(f"{PATH}/login")


def refused(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """A page saying what was refused: 404 for what does not exist, 403 for what the operator may not do."""
    missing = isinstance(error, (NotFoundError, LookupError))
    status = 404 if missing else 409 if isinstance(error, SagaStateError) else \
        400 if isinstance(error, AuditQueryError) else 403
    detail = getattr(error, "detail", None) or str(error)
    return page("refused.html.j2", request, status_code=status, status=status, detail=detail)


def unavailable(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """A page saying a server the console needs is not answering (an outage: try again), never a 500."""
    log.warning("console page unavailable: %s", cause(error))
    response = page("refused.html.j2", request, status_code=503, status=503,
                    detail=f"{UNAVAILABLE_DETAIL} ({cause(error)})")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
