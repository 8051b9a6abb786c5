"""Streams, for auditors: any aggregate's events with their metadata, its state at a chosen version, and
what changed between two versions, all rebuilt from its stream alone (the auditor's replay, the same as
``GET /v1/audit/{kind}/{id}``). Reading a patient's stream reads their personal data: the read is
recorded in their access log, as the API's is; erased data shows as erased."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from application.audit import plain
from application.bootstrap import AUDITED_KINDS
from application.views import SagaFilter, SagaListing
from domain.base import NotFoundError
from infrastructure.security.tokens import Principal
from interfaces.http.console.reads import AUDIT_KINDS, ConsoleReads
from interfaces.http.console.render import ConsoleController, page
from interfaces.http.console.session import PATH, console_of

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

    @get("/", sync_to_thread=True)
    def find(self, request: Request[Any, Any, Any], reads: NamedDependency[ConsoleReads],
             operator: NamedDependency[Principal],
             kind: Annotated[str | None, QueryParameter(required=False, max_length=40)] = None,
             wanted: Annotated[str | None, QueryParameter(name="id", required=False, max_length=128)] = None,
             ) -> Template | Redirect:
        """Find streams by an aggregate's id (of the kind given, or of any kind), or by a correlation id: the
        streams of each saga the request with that id started, and of the consultation, patient and doctor
        it concerns."""
        text = (wanted or "").strip()
        aggregate = _uuid(text)
        if aggregate is not None:
            kinds = [kind] if kind in KINDS else reads.kinds_of(aggregate)
            if len(kinds) == 1:
                return Redirect(f"{PATH}/streams/{kinds[0]}/{aggregate}")
        now, stuck_after = request.app.state.clock(), console_of(request).stuck_after
        started = reads.sagas(SagaFilter(correlation=text), now, stuck_after, None, 50).items if text else []
        found = [saga_streams(saga) for saga in started]
        return page("streams.html.j2", request, operator=operator, kinds=KINDS, kind=kind, wanted=text,
                    found=found, section="streams")

    @get("/{kind:str}/{aggregate_id:uuid}", sync_to_thread=True)
    def stream(self, request: Request[Any, Any, Any], reads: NamedDependency[ConsoleReads],
               operator: NamedDependency[Principal], kind: FromPath[str], aggregate_id: FromPath[UUID],
               version: Annotated[int | None, QueryParameter(ge=1, required=False)] = None,
               compare: Annotated[int | None, QueryParameter(ge=1, required=False)] = None,
               moment: Annotated[str | None, QueryParameter(name="as-of", required=False, max_length=40)] = None,
               ) -> Template:
        """The stream's events, the state at ``version`` (or as it was at the moment ``as-of``, UTC unless it
        says otherwise; the latest by default) and what changed since ``compare`` (the version before by
        default)."""
        if kind not in KINDS:
            raise NotFoundError(f"no stream kind {kind!r}; the kinds are {', '.join(KINDS)}")
        latest = reads.shown(kind, aggregate_id)  # shown (a patient's: recorded), unless another version is
        as_of = _moment(moment) if moment else None
        if as_of is not None:  # the version that was the latest at that moment (404 if the stream was not yet)
            version = reads.trail(kind, aggregate_id, as_of=as_of).version
        at = min(version or latest.version, latest.version)
        shown = latest if at == latest.version else reads.shown(kind, aggregate_id, at)
        against = min(compare, latest.version) if compare is not None else at - 1
        earlier = reads.trail(kind, aggregate_id, version=against) if against >= 1 else None
        changes = diff(earlier.state if earlier is not None else {}, shown.state) if against != at else []
        related = _related(reads, kind, aggregate_id)
        return page("stream.html.j2", request, operator=operator, kind=kind, trail=latest, shown=shown, at=at,
                    against=against, changes=changes, section="streams", as_of=as_of, related=related,
                    state=[(name, plain(value)) for name, value in shown.state.items()])


@dataclass(frozen=True)
class Stream:
    """A link to a stream: what it is to the saga, its kind and id."""

    role: str
    kind: str
    aggregate_id: UUID


def saga_streams(saga: SagaListing) -> list[Stream]:
    """The saga's own stream, then those of the consultation, patient and doctor it concerns."""
    return [Stream(f"{saga.kind} saga", AUDIT_KINDS[saga.aggregate], saga.saga_id),
            Stream("consultation", "consultation", saga.consultation_id), Stream("patient", "patient", saga.patient_id),
            Stream("doctor", "doctor", saga.doctor_id)]


def _related(reads: ConsoleReads, kind: str, aggregate_id: UUID) -> list[Stream]:
    """For a saga's stream, the streams it concerns (once the saga list has it)."""
    if kind not in AUDIT_KINDS.values():
        return []
    try:
        return saga_streams(reads.saga(aggregate_id)[0])[1:]
    except NotFoundError:
        return []


def _moment(text: str) -> datetime:
    """An ISO 8601 date-time; without an offset (a ``datetime-local`` field), UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationException(f"as-of: not a date-time: {text!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None
