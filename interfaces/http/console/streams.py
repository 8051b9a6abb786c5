"""Streams, for auditors: any aggregate's events with their metadata, its state at a chosen version, and
what changed between two versions, all rebuilt from its stream alone (the auditor's replay, the same as
``GET /v1/audit/{kind}/{id}``). Reading a patient's stream reads their personal data: the read is
recorded in their access log, as the API's is; erased data shows as erased."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from application.audit import plain
from application.bootstrap import AUDITED_KINDS
from application.clinic import Clinic
from domain.base import NotFoundError
from infrastructure.security.tokens import Principal
from interfaces.http.console.render import ConsoleController, page
from interfaces.http.console.session import PATH

KINDS = tuple(AUDITED_KINDS)
"""Every kind of stream an auditor may open (each context's ``audited``)."""


@dataclass(frozen=True)
class Change:
    """One field of the state that differs between two versions (``None``: absent on that side)."""

    field: str
    before: str | None
    after: str | None


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """The fields whose values differ, in the order of the later state, then those only the earlier had."""
    def shown(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(plain(value), sort_keys=True)

    fields = [*after, *(name for name in before if name not in after)]
    return [Change(name, shown(before[name]) if name in before else None, shown(after[name]) if name in after else None)
            for name in fields if before.get(name, _ABSENT) != after.get(name, _ABSENT)]


_ABSENT = object()


class ConsoleStreams(ConsoleController):
    path = f"{PATH}/streams"

    @get("/", sync_to_thread=False)
    def find(self, request: Request[Any, Any, Any], operator: NamedDependency[Principal],
             kind: Annotated[str | None, QueryParameter(required=False, max_length=40)] = None,
             aggregate: Annotated[UUID | None, QueryParameter(name="id", required=False)] = None) -> Template | Redirect:
        """Find a stream by its kind and id."""
        if kind in KINDS and aggregate is not None:
            return Redirect(f"{PATH}/streams/{kind}/{aggregate}")
        return page("streams.html.j2", request, operator=operator, kinds=KINDS, kind=kind, section="streams")

    @get("/{kind:str}/{aggregate_id:uuid}", sync_to_thread=True)
    def stream(self, request: Request[Any, Any, Any], clinic: NamedDependency[Clinic],
               operator: NamedDependency[Principal], kind: FromPath[str], aggregate_id: FromPath[UUID],
               version: Annotated[int | None, QueryParameter(ge=1, required=False)] = None,
               compare: Annotated[int | None, QueryParameter(ge=1, required=False)] = None) -> Template:
        """The stream's events, the state at ``version`` (the latest by default) and what changed since
        ``compare`` (the version before by default)."""
        if kind not in KINDS:
            raise NotFoundError(f"no stream kind {kind!r}; the kinds are {', '.join(KINDS)}")
        latest = clinic.auditor.trail(kind, aggregate_id)
        at = min(version or latest.version, latest.version)
        shown = clinic.audit(kind, aggregate_id, reader=operator.sub, roles=operator.roles, operation="console",
                             version=at)  # a patient's: this read goes to their access log
        against = min(compare, latest.version) if compare is not None else at - 1
        earlier = clinic.auditor.trail(kind, aggregate_id, version=against) if against >= 1 else None
        changes = diff(earlier.state if earlier is not None else {}, shown.state) if against != at else []
        return page("stream.html.j2", request, operator=operator, kind=kind, trail=latest, shown=shown, at=at,
                    against=against, changes=changes, section="streams",
                    state=[(name, plain(value)) for name, value in shown.state.items()])
