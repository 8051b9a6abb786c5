"""Read models, for operators: each projection's serving version, position and lag per log, and a rebuild
started from the page, whose progress the page follows to the end. The same code as ``clinic projections
status`` and ``clinic projections rebuild`` (``interfaces/cli/projections.py``, ``projections/rebuild.py``),
run in this process against this process's view store."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from application.clinic import Clinic
from application.read_models import ReadModels
from domain.base import NotFoundError
from domain.values import Role
from infrastructure.security.tokens import Principal
from interfaces.cli.projections import status
from interfaces.http.console.render import ConsoleController, page
from interfaces.http.console.session import PATH, Console
from projections.catalog import BY_NAME


def _console(request: Request[Any, Any, Any]) -> Console:
    console: Console = request.app.state.console
    return console


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
                    rebuilds={name: _console(request).rebuilds.of(name) for name in report}, may_act=operator.has_role(Role.ADMIN))

    @post("/{name:str}/rebuild", status_code=303, sync_to_thread=True)
    def start(self, request: Request[Any, Any, Any], clinic: NamedDependency[Clinic],
              operator: NamedDependency[Principal], name: FromPath[str]) -> Redirect:
        """Build the projection into a new version beside the serving one and switch readers to it (admins)."""
        if not operator.has_role(Role.ADMIN):
            raise PermissionDeniedException("only an admin rebuilds a read model; auditors read")
        _console(request).rebuilds.start(clinic, _projection(name))
        return Redirect(f"{PATH}/read-models#{name}", status_code=303)

    @get("/{name:str}/progress", sync_to_thread=False)
    def progress(self, request: Request[Any, Any, Any], operator: NamedDependency[Principal],
                 name: FromPath[str]) -> Template:
        """The rebuild's progress alone; while it runs, the page asks again every second."""
        return page("rebuild_progress.html.j2", request, name=_projection(name), rebuild=_console(request).rebuilds.of(name))
