"""What the console's saga and stream pages read, and the two ways they read it: beside the clinic's stores
(embedded mode, ``InProcessReads``), or through the clinic's public API with the signed-in operator's own
token (``clinic run console``, ``ApiReads``), as any client of the API would. The pages are the same either
way; so are the answers, since the API serves the same read models and the same audit."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse
from litestar import Request
from litestar.di import NamedDependency

from application.audit import AuditQueryError
from application.bootstrap import AUDITED_KINDS
from application.clinic import Clinic
from application.read_model_desk import LogPosition, ReadModelDesk, ReadModelStatus, Rebuild, RebuildUnderWay
from application.read_models import ReadModels
from application.views import AuditedEvent, AuditTrail, SagaFilter, SagaListing, SagaPage, SagaStep
from domain.base import NotFoundError
from infrastructure.security.tokens import Principal
from interfaces.http.console.session import COOKIE, console_of
from interfaces.http.contexts import service_for
from interfaces.http.controllers.oversight import operator_of
from interfaces.http.streams import KEEP_ALIVE_SECONDS, STREAM_SECONDS, Quiet, changes, relayed
from process_managers.booking import SagaStateError
from projections.rebuild import Progress
from projections.saga_list import KINDS as SAGA_KINDS

AGGREGATES = {kind: aggregate for aggregate, kind in SAGA_KINDS.items()}
"""Each saga kind's aggregate class, by the kind the API names."""
AUDIT_KINDS = {cls.__name__: kind for kind, (_, cls) in AUDITED_KINDS.items() if cls.__name__ in SAGA_KINDS}
"""The audit kind (``/v1/audit/{kind}``) that replays each saga aggregate, by its class's name."""


async def console_reads(request: Request[Any, Any, Any], clinic: NamedDependency[Clinic],
                        operator: NamedDependency[Principal]) -> ConsoleReads:
    """The pages' reads: beside the stores, or through the API with the operator's session token."""
    console = console_of(request)
    if console.in_process:
        return InProcessReads(clinic, operator)
    if console.api_url is None:
        raise RuntimeError("this console reads neither the stores nor the API")
    return ApiReads(console.api_url, request.cookies[COOKIE])


@runtime_checkable
class ConsoleReads(Protocol):
    def sagas(self, wanted: SagaFilter, now: datetime, stuck_after: timedelta, cursor: str | None,
              limit: int) -> SagaPage: ...

    def saga(self, saga_id: UUID) -> tuple[SagaListing, list[SagaStep]]: ...

    def trail(self, kind: str, aggregate_id: UUID, version: int | None = None,
              as_of: datetime | None = None) -> AuditTrail: ...

    def shown(self, kind: str, aggregate_id: UUID, version: int | None = None) -> AuditTrail:
        """``trail`` at a version the operator is shown (the latest by default); a patient's is recorded in
        their access log."""
        ...

    def kinds_of(self, aggregate_id: UUID) -> list[str]: ...

    def act(self, saga_id: UUID, action: str) -> None:
        """``retry-validation`` or ``compensate``, with the operator as the actor."""
        ...

    def sagas_changes(self) -> AsyncIterator[bool]:
        """``True`` each time any saga changes, ``False`` when none did for 15 s; for 5 minutes."""
        ...

    def saga_changes(self, saga_id: UUID) -> AsyncIterator[bool]:
        """``True`` each time this saga changes, ``False`` when it did not for 15 s; for 5 minutes."""
        ...

    def read_models(self) -> list[tuple[ReadModelStatus, Rebuild | None]]:
        """Each projection's status, and the last rebuild of it started by an operator."""
        ...

    def rebuild(self, name: str) -> None:
        """Start rebuilding a read model (or follow the rebuild of it under way)."""
        ...

    def rebuild_moves(self, name: str) -> AsyncIterator[Rebuild | None]:
        """The last rebuild of ``name`` each time it moves, until it ends; ``None`` when it did not for 15 s."""
        ...


class InProcessReads:
    """Beside the stores (embedded mode): the use cases and read models the API itself calls."""

    def __init__(self, clinic: Clinic, operator: Principal) -> None:
        self.clinic, self.operator = clinic, operator

    def sagas(self, wanted: SagaFilter, now: datetime, stuck_after: timedelta, cursor: str | None,
              limit: int) -> SagaPage:
        return self.clinic.require(ReadModels).sagas(lambda saga: wanted.keeps(saga, now, stuck_after), cursor, limit)

    def saga(self, saga_id: UUID) -> tuple[SagaListing, list[SagaStep]]:
        reads = self.clinic.require(ReadModels)
        return reads.saga_listing(saga_id), reads.saga(saga_id).steps

    def trail(self, kind: str, aggregate_id: UUID, version: int | None = None,
              as_of: datetime | None = None) -> AuditTrail:
        return self.clinic.auditor.trail(kind, aggregate_id, version=version, as_of=as_of)

    def shown(self, kind: str, aggregate_id: UUID, version: int | None = None) -> AuditTrail:
        return self.clinic.audit(kind, aggregate_id, reader=self.operator.sub, roles=self.operator.roles,
                                 operation="console", version=version)

    def kinds_of(self, aggregate_id: UUID) -> list[str]:
        return self.clinic.auditor.kinds_of(aggregate_id)

    def act(self, saga_id: UUID, action: str) -> None:
        do = self.clinic.compensate_saga if action == "compensate" else self.clinic.retry_saga_validation
        do(saga_id, operator_of(self.operator))

    def sagas_changes(self) -> AsyncIterator[bool]:
        # told at once of where they are (a change may have come since the page was drawn), then of each change
        return _moved(changes(None, self.clinic.require(ReadModels).sagas_changed))

    def saga_changes(self, saga_id: UUID) -> AsyncIterator[bool]:
        reads = self.clinic.require(ReadModels)
        return _moved(changes(None, lambda seen, wait: reads.saga_changed(saga_id, seen, wait)))

    def read_models(self) -> list[tuple[ReadModelStatus, Rebuild | None]]:
        desk = self.clinic.require(ReadModelDesk)
        return [(status, desk.of(name)) for name, status in desk.status().items()]

    def rebuild(self, name: str) -> None:
        self.clinic.require(ReadModelDesk).start(name)

    def rebuild_moves(self, name: str) -> AsyncIterator[Rebuild | None]:
        return self.clinic.require(ReadModelDesk).moves(name, STREAM_SECONDS, KEEP_ALIVE_SECONDS)


class ApiReads:
    """Through the clinic's public API, as the operator: their token, their scopes, their reads recorded as
    theirs. ``base`` is the gateway's URL, or a URL with ``{service}`` in it (``http://clinic-{service}-api``
    in a cluster): each request then goes straight to the service the gateway would route it to. A refusal
    or absence is the API's; an outage is a ``ConnectionError``."""

    def __init__(self, base: str, token: str, timeout: float = 10) -> None:
        self.base, self.token, self.timeout = base, token, timeout

    def sagas(self, wanted: SagaFilter, now: datetime, stuck_after: timedelta, cursor: str | None,
              limit: int) -> SagaPage:
        query = {"state": wanted.state, "correlation_id": wanted.correlation, "patient_id": wanted.patient,
                 "doctor_id": wanted.doctor, "since": wanted.since, "until": wanted.until, "cursor": cursor,
                 "limit": limit}
        page = self._get("/v1/sagas", {name: str(value) for name, value in query.items() if value is not None})
        return SagaPage([_listing(item) for item in page["items"]], page["next_cursor"])

    def saga(self, saga_id: UUID) -> tuple[SagaListing, list[SagaStep]]:
        saga = self._get(f"/v1/sagas/{saga_id}")
        if saga.get("kind") is None:
            raise NotFoundError(f"saga {saga_id} is not in the list of sagas yet")
        steps = [SagaStep(step["name"], step["status"], _moment(step["at"])) for step in saga["steps"]]
        return _listing(saga), steps

    def trail(self, kind: str, aggregate_id: UUID, version: int | None = None,
              as_of: datetime | None = None) -> AuditTrail:
        query = {"version": str(version)} if version is not None else {"as_of": as_of.isoformat()} if as_of else {}
        return _trail(self._get(f"/v1/audit/{kind}/{aggregate_id}", query))

    def shown(self, kind: str, aggregate_id: UUID, version: int | None = None) -> AuditTrail:
        return self.trail(kind, aggregate_id, version)  # the API records every read of a patient's itself

    def kinds_of(self, aggregate_id: UUID) -> list[str]:
        for kind in AUDITED_KINDS:  # each asks the service that keeps that kind; the first that has it
            try:
                self._get(f"/v1/audit/{kind}/{aggregate_id}", {"version": "1"})
            except NotFoundError:
                continue
            return [kind]
        return []

    def act(self, saga_id: UUID, action: str) -> None:
        self._call("POST", f"/v1/sagas/{saga_id}/{action}", headers={"Idempotency-Key": f'"{uuid.uuid4()}"'})

    def sagas_changes(self) -> AsyncIterator[bool]:
        return _moved(relayed(self._events("/v1/sagas/events")))

    def saga_changes(self, saga_id: UUID) -> AsyncIterator[bool]:
        # the API tells the saga as it is first: it may have changed since the page was drawn
        return _moved(relayed(self._events(f"/v1/sagas/{saga_id}/events")))

    def read_models(self) -> list[tuple[ReadModelStatus, Rebuild | None]]:
        return [_read_model(item) for item in self._get("/v1/read-models")["items"]]

    def rebuild(self, name: str) -> None:
        self._call("POST", f"/v1/read-models/{name}/rebuild", headers={"Idempotency-Key": f'"{uuid.uuid4()}"'})

    async def rebuild_moves(self, name: str) -> AsyncIterator[Rebuild | None]:
        async for event in relayed(self._events(f"/v1/read-models/{name}/rebuild/events")):
            if isinstance(event, Quiet):
                yield None
            elif event.event == "progress":
                yield _rebuild(name, json.loads(event.data))

    async def _events(self, path: str) -> AsyncIterator[ServerSentEvent]:
        """The API's server-sent events at ``path`` (its keep-alive comments are not events)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, read=None)) as client, \
                    aconnect_sse(client, "GET", self._url(path), headers=headers) as source:
                if not source.response.is_success:
                    await source.response.aread()
                    raise _refusal(source.response)
                async for event in source.aiter_sse():
                    yield event
        except httpx.HTTPError as error:
            raise ConnectionError(f"the clinic's API at {self.base} is not answering: {error}") from None

    def _get(self, path: str, query: dict[str, str] | None = None) -> Any:
        return self._call("GET", path, params=query)

    def _call(self, method: str, path: str, **options: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json",
                   **options.pop("headers", {})}
        try:
            response = httpx.request(method, self._url(path), headers=headers, timeout=self.timeout, **options)
        except httpx.HTTPError as error:
            raise ConnectionError(f"the clinic's API at {self.base} is not answering: {error}") from None
        if response.is_success:
            return response.json()
        raise _refusal(response)


    def _url(self, path: str) -> str:
        if "{service}" not in self.base:
            return self.base + path
        return self.base.replace("{service}", service_for(path)) + path


def _refusal(response: httpx.Response) -> Exception:
    try:
        detail = str(response.json().get("detail") or response.reason_phrase)
    except ValueError:
        detail = response.reason_phrase
    status = response.status_code
    if status == 404:
        return NotFoundError(detail)
    if status == 409:
        return SagaStateError(detail)
    if status == 400:
        return AuditQueryError(detail)
    if status in (401, 403):
        return PermissionError(detail)
    return ConnectionError(f"the clinic's API answered {status}: {detail}")


async def _moved(moves: AsyncIterator[Any]) -> AsyncIterator[bool]:
    async for move in moves:
        yield not isinstance(move, Quiet)


def _read_model(shown: dict[str, Any]) -> tuple[ReadModelStatus, Rebuild | None]:
    building = shown["building"]
    status = ReadModelStatus(shown["name"], shown["serving_version"], shown["code_version"], shown["lag"],
                             shown["lag_seconds"], {log: LogPosition(**s) for log, s in shown["logs"].items()},
                             building and RebuildUnderWay(**building))
    last = shown["last_rebuild"]
    return status, last and _rebuild(shown["name"], last)


def _rebuild(name: str, shown: dict[str, Any]) -> Rebuild:
    """A rebuild as the API shows it (``last_rebuild``), as the console's pages draw it."""
    outcome = {"running": None, "done": "done"}.get(shown["state"], f"failed: {shown['error']}")
    progress = None if shown["version"] is None else Progress(
        name, shown["version"], shown["done"], shown["total"], shown["events_per_second"] or 0.0, shown["eta_seconds"])
    return Rebuild(name, _moment(shown["started_at"]), progress, outcome)


def _listing(saga: dict[str, Any]) -> SagaListing:
    return SagaListing(UUID(saga["saga_id"]), saga["kind"], AGGREGATES[saga["kind"]], UUID(saga["consultation_id"]),
                       UUID(saga["patient_id"]), UUID(saga["doctor_id"]), _moment(saga["started_at"]), saga["state"],
                       saga["rejection_reason"], _moment(saga["deadline"]), _moment(saga["waiting_since"]),
                       saga.get("correlation_id"), saga.get("trace_id"))


def _trail(trail: dict[str, Any]) -> AuditTrail:
    events = [AuditedEvent(event["type"], event["version"], _moment(event["timestamp"]), event.get("correlation_id"),
                           event.get("causation_id"), event.get("saga_id"), event.get("actor"), event.get("data", {}))
              for event in trail["events"]]
    return AuditTrail(trail["kind"], UUID(trail["id"]), trail["version"], trail["state"], events, trail.get("integrity"))


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)
