"""The read models, for operators: served where the views are kept (the projection worker; embedded, the one
process). The same status as ``clinic projections status``; a rebuild started here runs in that process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.response import ServerSentEvent, ServerSentEventMessage

from application.clinic import Clinic
from application.read_model_desk import ReadModelDesk, ReadModelStatus, Rebuild
from domain.base import NotFoundError
from domain.values import Role
from infrastructure.security.tokens import Principal
from interfaces.http.access import requires_role
from interfaces.http.controllers.consultations import one_of
from interfaces.http.idempotency import IdempotencyKeyHeader, idempotency_key
from interfaces.http.schemas import (
    ReadModel,
    ReadModelBuilding,
    ReadModelList,
    ReadModelLog,
    ReadModelRebuild,
    ReadModelRebuildStarted,
)
from interfaces.http.streams import (
    KEEP_ALIVE,
    KEEP_ALIVE_SECONDS,
    STREAM_HEADERS,
    STREAM_RESPONSE_HEADERS,
    stream_seconds,
)
from projections.catalog import BY_NAME

ReadModelName = Annotated[str, one_of(BY_NAME, "the projections")]


class ReadModelController(Controller):
    path = "/v1/read-models"
    tags = ["oversight"]
    guards = [requires_role(Role.AUDITOR, Role.ADMIN)]

    @get(operation_id="listReadModels", summary="The read models and how far each is", sync_to_thread=True)
    def list(self, clinic: NamedDependency[Clinic]) -> ReadModelList:
        """Each projection: the version readers use, the code's, how far it is into each event log it follows
        (position, head, lag in events and in seconds), a version being built beside it, and the last rebuild
        started through the API."""
        desk = clinic.require(ReadModelDesk)
        return ReadModelList([read_model(desk, status) for status in desk.status().values()])

    @get("/{name:str}", operation_id="getReadModel", summary="A read model and how far it is", sync_to_thread=True)
    def read(self, name: ReadModelName, clinic: NamedDependency[Clinic]) -> ReadModel:
        """One projection, as `listReadModels` shows it."""
        desk = clinic.require(ReadModelDesk)
        desk.projection(name)
        return read_model(desk, desk.status()[name])

    @post("/{name:str}/rebuild", operation_id="rebuildReadModel", summary="Rebuild a read model without downtime",
          status_code=202, sync_to_thread=True, guards=[requires_role(Role.ADMIN)], response_headers=[ResponseHeader(
              name="Location", documentation_only=True, required=True, example="/v1/read-models/{name}",
              description="The read model, to follow the rebuild")])
    def rebuild(self, name: ReadModelName, clinic: NamedDependency[Clinic], request: Request[Principal, Any, Any],
                idempotency: IdempotencyKeyHeader = None) -> Response[ReadModelRebuildStarted]:
        """Build the projection into a new version beside the serving one, from the event logs, and switch
        readers to it once it has caught up; then the old version is deleted (an admin). Readers are served
        throughout. Asking while a rebuild of it started here runs is that same rebuild; a repeat with the
        same `Idempotency-Key` is the rebuild that key started (kept by the projection worker's process).
        Follow it with `streamReadModelRebuild`, or read the read model's `last_rebuild`."""
        desk = clinic.require(ReadModelDesk)
        desk.status()  # the stores answer (else 503, and nothing started)
        started = desk.start(name, idempotency_key(request, idempotency))
        return Response(ReadModelRebuildStarted(name, started.started_at),
                        headers={"Location": f"{self.path}/{name}"})

    @get("/{name:str}/rebuild/events", operation_id="streamReadModelRebuild",
         summary="Follow a read model's rebuild (server-sent events)", media_type="text/event-stream",
         response_headers=STREAM_RESPONSE_HEADERS)
    async def rebuild_events(self, request: Request[Any, Any, Any], name: ReadModelName,
                             clinic: NamedDependency[Clinic]) -> ServerSentEvent:
        """The last rebuild started through the API, now and as it moves (`event: progress`, `data:` the
        rebuild as `last_rebuild` shows it), then `event: ended` (`data:` `done` or `failed`) once it has
        ended, which ends the stream; a comment every 15 s keeps the connection open; ends after 5 minutes.
        404 if no rebuild of it was started through the API since the projection worker started."""
        desk = clinic.require(ReadModelDesk)
        await asyncio.to_thread(desk.store.serving_version, name)  # the views' store answers (else 503)
        if desk.of(name) is None:
            raise NotFoundError(f"no rebuild of {name} was started through the API; rebuildReadModel starts one")
        moves = desk.moves(name, stream_seconds(request), KEEP_ALIVE_SECONDS)
        return ServerSentEvent(_progress(moves), headers=STREAM_HEADERS)


async def _progress(moves: AsyncIterator[Rebuild | None]) -> AsyncIterator[ServerSentEventMessage]:
    async for move in moves:
        if move is None:
            yield KEEP_ALIVE
            continue
        shown = rebuild_of(move)
        yield ServerSentEventMessage(event="progress", data=msgspec.json.encode(shown).decode())
        if shown.state != "running":
            yield ServerSentEventMessage(event="ended", data=shown.state)


def read_model(desk: ReadModelDesk, status: ReadModelStatus) -> ReadModel:
    logs = {log: ReadModelLog(s.position, s.head, s.lag, s.lag_seconds) for log, s in status.leaders.items()}
    under_way, last = status.rebuild, desk.of(status.name)
    building = None if under_way is None else ReadModelBuilding(under_way.version, under_way.code_version,
                                                                under_way.lag)
    return ReadModel(status.name, status.serving_version, status.code_version, status.lag, status.lag_seconds, logs,
                     building, None if last is None else rebuild_of(last))


def rebuild_of(rebuild: Rebuild) -> ReadModelRebuild:
    """A rebuild as the API shows it."""
    progress, outcome = rebuild.progress, rebuild.outcome
    state = "running" if outcome is None else "done" if outcome == "done" else "failed"
    ended = outcome is not None
    return ReadModelRebuild(rebuild.started_at, state, rebuild.percent,  # type: ignore[arg-type] # state: a Literal
                            None if progress is None else progress.version,
                            progress.done if progress else 0, progress.total if progress else 0,
                            None if progress is None or ended else progress.events_per_second,
                            None if progress is None or ended else progress.eta_seconds,
                            outcome.removeprefix("failed: ") if state == "failed" and outcome else None)
