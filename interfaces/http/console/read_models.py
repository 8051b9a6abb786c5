"""Read models, for operators: each projection's serving version, position and lag per log, and a rebuild
started from the page, whose progress the page follows to the end. The same operations as ``clinic
projections status`` and ``/v1/read-models``: beside the stores (embedded), or through the API, where the
projection worker runs the rebuild (``clinic run console``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath
from litestar.response import Redirect, ServerSentEvent, ServerSentEventMessage, Template

from application.read_model_desk import ReadModelDesk, Rebuild
from domain.values import Role
from infrastructure.security.tokens import Principal
from interfaces.http.console.reads import ConsoleReads
from interfaces.http.console.render import ConsoleController, page
from interfaces.http.console.session import PATH
from interfaces.http.streams import KEEP_ALIVE, STREAM_HEADERS


class ConsoleReadModels(ConsoleController):
    path = f"{PATH}/read-models"

    @get("/", sync_to_thread=True)
    def overview(self, request: Request[Any, Any, Any], reads: NamedDependency[ConsoleReads],
                 operator: NamedDependency[Principal]) -> Template:
        """Each projection: the version readers use, the code's, each log's position, head and lag, and any
        rebuild under way."""
        shown = reads.read_models()
        return page("read_models.html.j2", request, operator=operator, section="read-models",
                    report={status.name: status for status, _ in shown},
                    rebuilds={status.name: last for status, last in shown}, may_act=operator.has_role(Role.ADMIN))

    @post("/{name:str}/rebuild", status_code=303, sync_to_thread=True)
    def start(self, reads: NamedDependency[ConsoleReads], operator: NamedDependency[Principal],
              name: FromPath[str]) -> Redirect:
        """Build the projection into a new version beside the serving one and switch readers to it (admins)."""
        if not operator.has_role(Role.ADMIN):
            raise PermissionDeniedException("only an admin rebuilds a read model; auditors read")
        ReadModelDesk.projection(name)
        reads.rebuild(name)
        return Redirect(f"{PATH}/read-models#{name}", status_code=303)

    @get("/{name:str}/progress")
    async def progress(self, request: Request[Any, Any, Any], reads: NamedDependency[ConsoleReads],
                       operator: NamedDependency[Principal], name: FromPath[str]) -> ServerSentEvent:
        """The rebuild's progress as it moves: ``event: progress`` (``data``: the progress bar's HTML) at each
        step, then ``event: ended`` once it has ended; a keep-alive comment every 15 s."""
        engine = request.app.template_engine
        if engine is None:
            raise RuntimeError("the console's templates are not configured")
        ReadModelDesk.projection(name)
        bar = engine.get_template("rebuild_bar.html.j2")
        return ServerSentEvent(_progress(reads.rebuild_moves(name), name, bar.render), headers=STREAM_HEADERS)


async def _progress(moves: AsyncIterator[Rebuild | None], name: str,
                    render: Callable[..., str]) -> AsyncIterator[ServerSentEventMessage]:
    try:
        async for rebuild in moves:
            if rebuild is None:
                yield KEEP_ALIVE
                continue
            yield ServerSentEventMessage(event="progress", data=render(name=name, rebuild=rebuild))
            if rebuild.outcome is not None:
                yield ServerSentEventMessage(event="ended", data=rebuild.outcome)
                return
    except (ConnectionError, PermissionError) as error:  # the API stopped answering: the browser reconnects
        yield ServerSentEventMessage(comment=f"ended: {error}")
