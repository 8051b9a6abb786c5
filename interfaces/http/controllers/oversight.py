"""Sagas and audit trails: for auditors and admins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from application.audit import plain
from application.bootstrap import AUDITED_KINDS
from application.clinic import Clinic
from application.read_models import ReadModels
from application.views import STUCK_AFTER, Saga, SagaFilter, SagaListing, SagaStateFilter
from domain.booking_saga_table import ENDED_STATES
from domain.values import Role
from infrastructure.security.tokens import Principal
from interfaces.http.access import requires_role
from interfaces.http.controllers.consultations import (
    EVENT_POSITION,
    EVENT_POSITION_HEADER,
    FRESHNESS_HEADERS,
    Cursor,
    LastEventId,
    MinPosition,
    PageLimit,
    freshness_headers,
    one_of,
    read_after,
)
from interfaces.http.idempotency import IdempotencyKeyHeader, idempotency_key
from interfaces.http.schemas import AuditTrail, SagaActionTaken, SagaSummary, SagaSummaryPage
from interfaces.http.streams import (
    KEEP_ALIVE,
    STREAM_HEADERS,
    STREAM_RESPONSE_HEADERS,
    Quiet,
    change_events,
    changes,
    stream_seconds,
)
from process_managers.booking import BookingProcessManager

AuditKind = Annotated[str, one_of(AUDITED_KINDS, "the kinds the contexts record")]


ACTION_HEADERS = [EVENT_POSITION_HEADER, ResponseHeader(
    name="Location", documentation_only=True, required=True, example="/v1/sagas/{saga_id}",
    description="The saga, to read what the action led to")]


class SagaController(Controller):
    path = "/v1/sagas"
    tags = ["oversight"]
    guards = [requires_role(Role.AUDITOR, Role.ADMIN)]

    @get(operation_id="listSagas", summary="Find sagas", sync_to_thread=True, response_headers=FRESHNESS_HEADERS)
    def list(self, request: Request[Principal, Any, Any], clinic: NamedDependency[Clinic],
             in_state: Annotated[SagaStateFilter | None, QueryParameter(
                 name="state", required=False, description="`open`: not ended; `stuck`: open, and past its deadline or on one "
                                             f"step longer than {STUCK_AFTER.seconds} s; or how it ended")] = None,
             correlation_id: Annotated[str | None, QueryParameter(
                 required=False, min_length=1, max_length=128,
                 description="Started by the request with this `X-Correlation-Id`")] = None,
             patient_id: Annotated[UUID | None, QueryParameter(required=False, description="This patient's")] = None,
             doctor_id: Annotated[UUID | None, QueryParameter(required=False, description="With this doctor")] = None,
             since: Annotated[date | None, QueryParameter(
                 required=False, description="Started on this day (UTC) or later")] = None,
             until: Annotated[date | None, QueryParameter(
                 required=False, description="Started on this day (UTC) or earlier")] = None,
             cursor: Cursor = None,
             limit: PageLimit = 20,
             min_position: MinPosition = None) -> Response[SagaSummaryPage]:
        """Booking and reschedule sagas, newest first (read model), narrowed by any of the filters."""
        stale = read_after(clinic, min_position)
        now, wanted = request.app.state.clock(), SagaFilter(in_state, correlation_id, patient_id, doctor_id, since, until)
        page = clinic.require(ReadModels).sagas(lambda saga: wanted.keeps(saga, now), cursor, limit)
        body = SagaSummaryPage([saga_summary(saga, now) for saga in page.items], page.next_cursor)
        return Response(body, headers={**freshness_headers(clinic, "saga_status"), **stale})

    @get("/events", operation_id="streamSagaChanges", summary="Follow changes of any saga (server-sent events)",
         media_type="text/event-stream", response_headers=STREAM_RESPONSE_HEADERS)
    async def changes(self, request: Request[Principal, Any, Any], clinic: NamedDependency[Clinic],
                      last_event_id: LastEventId = None) -> ServerSentEvent:
        """`event: sagas` now, then each time any saga changes (`id:` and `data:` `{"position": N}`, how far the
        saga views are into the booking log: read `listSagas` with `X-Min-Position` for what changed); a comment
        every 15 s keeps the connection open; ends after 5 minutes. Reconnect with `Last-Event-ID` to be told
        only of changes after the position you saw."""
        reads = clinic.require(ReadModels)
        await asyncio.to_thread(reads.sagas, limit=1)  # the views' store answers (else 503)

        async def position(now: int | None) -> str:
            return msgspec.json.encode({"position": now}).decode()

        return ServerSentEvent(change_events("sagas", _position_in(last_event_id), reads.sagas_changed, position,
                                             stream_seconds(request)), headers=STREAM_HEADERS)

    @get("/{saga_id:uuid}/events", operation_id="streamSagaEvents", summary="Follow a saga (server-sent events)",
         media_type="text/event-stream", response_headers=STREAM_RESPONSE_HEADERS)
    async def events(self, request: Request[Principal, Any, Any], saga_id: FromPath[UUID],
                     clinic: NamedDependency[Clinic]) -> ServerSentEvent:
        """The saga now, then again at each change of it (`event: saga`, `data:` the saga as `getSaga` returns
        it); a comment every 15 s keeps the connection open. The stream ends once the saga has ended
        (completed, rejected, cancelled) or after 5 minutes."""
        reads = clinic.require(ReadModels)
        seen = reads.saga_stamp(saga_id)
        first = await asyncio.to_thread(reads.saga, saga_id)  # 404 for a saga not (yet) in the read model
        return ServerSentEvent(_saga_events(reads, first, seen, stream_seconds(request)), headers=STREAM_HEADERS)

    @get("/{saga_id:uuid}", operation_id="getSaga", summary="Read a booking saga", sync_to_thread=True,
         response_headers=FRESHNESS_HEADERS)
    def read(self, saga_id: FromPath[UUID], clinic: NamedDependency[Clinic],
             min_position: MinPosition = None) -> Response[Saga]:
        """The booking saga's state and every step it took (from the read model)."""
        stale = read_after(clinic, min_position)
        saga = clinic.require(ReadModels).saga(saga_id)
        return Response(saga, headers={**freshness_headers(clinic, "saga_status"), **stale})

    @post("/{saga_id:uuid}/retry-validation", operation_id="retrySagaValidation",
          summary="Ask the registry again now for a saga waiting on it", status_code=200, sync_to_thread=True,
          guards=[requires_role(Role.ADMIN)], response_headers=ACTION_HEADERS)
    def retry_validation(self, saga_id: FromPath[UUID], clinic: NamedDependency[Clinic],
                         request: Request[Principal, Any, Any],
                         idempotency: IdempotencyKeyHeader = None) -> Response[SagaActionTaken]:
        """A saga whose validation found the registry unavailable asks it again at once, instead of at its next
        retry (an admin, once the registry is back). 409 if the saga is not waiting on the registry."""
        clinic.retry_saga_validation(saga_id, operator_of(request.user), idempotency_key(request, idempotency))
        return _taken(clinic, saga_id, "retry-validation")

    @post("/{saga_id:uuid}/compensate", operation_id="compensateSaga", summary="Compensate a saga now",
          status_code=200, sync_to_thread=True, guards=[requires_role(Role.ADMIN)], response_headers=ACTION_HEADERS)
    def compensate(self, saga_id: FromPath[UUID], clinic: NamedDependency[Clinic],
                   request: Request[Principal, Any, Any],
                   idempotency: IdempotencyKeyHeader = None) -> Response[SagaActionTaken]:
        """A saga still waiting under its deadline is compensated at once, as its deadline would: the slot it
        holds is released and the consultation rejected `compensated_by_operator` (an admin). 409 once the
        saga has ended."""
        clinic.compensate_saga(saga_id, operator_of(request.user), idempotency_key(request, idempotency))
        return _taken(clinic, saga_id, "compensate")


async def _saga_events(reads: ReadModels, saga: Saga, seen: int | None,
                       seconds: float) -> AsyncIterator[ServerSentEventMessage]:
    saga_id = saga.saga_id
    yield ServerSentEventMessage(event="saga", data=msgspec.json.encode(saga).decode())
    if saga.state in ENDED_STATES:
        return
    async for now in changes(seen, lambda since, wait: reads.saga_changed(saga_id, since, wait), seconds):
        if isinstance(now, Quiet):
            yield KEEP_ALIVE
            continue
        saga = await asyncio.to_thread(reads.saga, saga_id)
        yield ServerSentEventMessage(event="saga", data=msgspec.json.encode(saga).decode())
        if saga.state in ENDED_STATES:
            return


def _position_in(last_event_id: str | None) -> int | None:
    """The position a reconnecting client saw last (``Last-Event-ID``; anything else: none)."""
    return int(last_event_id) if last_event_id and last_event_id.isdigit() else None


def saga_summary(saga: SagaListing, now: datetime) -> SagaSummary:
    return SagaSummary(saga.saga_id, saga.kind, saga.consultation_id, saga.patient_id,  # type: ignore[arg-type]
                       saga.doctor_id, saga.started_at, saga.state, saga.rejection_reason, saga.deadline,
                       saga.waiting_since, saga.stuck(now, STUCK_AFTER), saga.correlation_id, saga.trace_id)


def operator_of(principal: Principal) -> str:
    """How an operator is recorded as the actor of what they asked for."""
    return f"operator:{principal.sub}"


def _taken(clinic: Clinic, saga_id: UUID, action: str) -> Response[SagaActionTaken]:
    return Response(SagaActionTaken(saga_id, action),  # type: ignore[arg-type]
                    headers={"Location": f"/v1/sagas/{saga_id}",
                             EVENT_POSITION: clinic.position(clinic.require(BookingProcessManager))})


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["oversight"]
    guards = [requires_role(Role.AUDITOR, Role.ADMIN)]

    @get("/{kind:str}/{aggregate_id:uuid}", operation_id="auditAggregate",
         summary="Audit an aggregate's history", sync_to_thread=True)
    def trail(self, kind: AuditKind, aggregate_id: FromPath[UUID], clinic: NamedDependency[Clinic],
              request: Request[Principal, Any, Any],
              version: Annotated[int | None, QueryParameter(
                  ge=1, required=False, description="Rebuild the aggregate as it was at this version")] = None,
              as_of: Annotated[datetime | None, QueryParameter(
                  required=False, description="Rebuild it as it was at this moment (not with `version`)")] = None,
              ) -> AuditTrail:
        """An aggregate rebuilt from its stream alone, at a version or a moment, with its history.

        Auditing a patient reads their personal data: that read is recorded in their access log.
        """
        trail = clinic.audit(kind, aggregate_id, request.user.sub, request.user.roles, "auditAggregate",
                             version=version, as_of=as_of)
        return AuditTrail(kind, trail.aggregate_id, trail.version, plain(trail.state), trail.events,
                          trail.integrity)
