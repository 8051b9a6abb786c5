"""Read models, for operators: each projection's serving version, position and lag per log, and a rebuild
started from the page, whose progress the page follows to the end. The same code as ``clinic projections
status`` and ``clinic projections rebuild`` (``interfaces/cli/projections.py``, ``projections/rebuild.py``),
run in this process against this process's view store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath
from litestar.response import Redirect, ServerSentEvent, ServerSentEventMessage, Template

from application.clinic import Clinic
from application.read_models import ReadModels
from domain.base import NotFoundError
from domain.values import Role
from infrastructure.security.tokens import Principal
from interfaces.cli.projections import status
from interfaces.http.console.rebuilds import Rebuilds
from interfaces.http.console.render import ConsoleController, page
from interfaces.http.console.session import PATH, console_of
from interfaces.http.controllers.consultations import KEEP_ALIVE_SECONDS, STREAM_HEADERS, STREAM_SECONDS
from projections.catalog import BY_NAME


def _projection(name: str) -> str:
    if name not in BY_NAME:
        raise NotFoundError(f"no projection {name!r}")
    return name


class ConsoleReadModels(ConsoleController):
    path = f"{PATH}/read-models"

    @get("/", sync_to_thread=True)
    def overview(self, request: Request[Any, Any, Any], clinic: NamedDependency[Clinic],
                 operator: NamedDependency[Principal]) -> Template:
        """Each projection: the version readers use, the code's, each log's position, head and lag, and any
        rebuild under way."""
        report = status({app.name: app for app in clinic.apps()}, clinic.require(ReadModels).store)["projections"]
        return page("read_models.html.j2", request, operator=operator, section="read-models", report=report,
                    rebuilds={name: console_of(request).rebuilds.of(name) for name in report}, may_act=operator.has_role(Role.ADMIN))

    @post("/{name:str}/rebuild", status_code=303, sync_to_thread=True)
    def start(self, request: Request[Any, Any, Any], clinic: NamedDependency[Clinic],
              operator: NamedDependency[Principal], name: FromPath[str]) -> Redirect:
        """Build the projection into a new version beside the serving one and switch readers to it (admins)."""
        if not operator.has_role(Role.ADMIN):
            raise PermissionDeniedException("only an admin rebuilds a read model; auditors read")
        console_of(request).rebuilds.start(clinic, _projection(name))
        return Redirect(f"{PATH}/read-models#{name}", status_code=303)

    @get("/{name:str}/progress")
    async def progress(self, request: Request[Any, Any, Any], operator: NamedDependency[Principal],
                       name: FromPath[str]) -> ServerSentEvent:
        """The rebuild's progress as it moves: ``event: progress`` (``data``: the progress bar's HTML) at each
        step, then ``event: ended`` once it has ended; a keep-alive comment every 15 s."""
        engine = request.app.template_engine
        if engine is None:
            raise RuntimeError("the console's templates are not configured")
        bar = engine.get_template("rebuild_bar.html.j2")
        return ServerSentEvent(_progress(console_of(request).rebuilds, _projection(name), bar.render),
                               headers=STREAM_HEADERS)


async def _progress(rebuilds: Rebuilds, name: str, render: Callable[..., str]) -> AsyncIterator[ServerSentEventMessage]:
    deadline, seen = time.monotonic() + STREAM_SECONDS, -1
    while (remaining := deadline - time.monotonic()) > 0:
        now = await rebuilds.changed(seen, min(KEEP_ALIVE_SECONDS, remaining))
        rebuild = rebuilds.of(name)
        if now == seen or rebuild is None:
            yield ServerSentEventMessage(comment="keep-alive")
            continue
        seen = now
        yield ServerSentEventMessage(event="progress", data=render(name=name, rebuild=rebuild))
        if rebuild.outcome is not None:
            yield ServerSentEventMessage(event="ended", data=rebuild.outcome)
            return
