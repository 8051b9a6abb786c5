"""Booking, reading and cancelling consultations; the doctor's clinical notes."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import FromPath, HeaderParameter, JSONBody, PathParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from application.clinic import Clinic
from application.common import VersionConflictError
from application.consultations import Check, ConsultationsApplication, started_reschedule
from application.idempotency import nothing, once
from application.read_models import ConsultationRead, Freshness, ReadModels, parse_positions
from application.views import ConsultationView
from domain.values import Role
from infrastructure.security.tokens import Principal
from interfaces.http import access
from interfaces.http.idempotency import IdempotencyKeyHeader, idempotency_key
from interfaces.http.schemas import (
    AddNote,
    BookConsultation,
    BookingAccepted,
    CancelConsultation,
    Consultation,
    ConsultationCancelled,
    ConsultationEnded,
    NoteAdded,
    Notes,
    RescheduleAccepted,
    RescheduleConsultation,
)
from interfaces.http.streams import (
    KEEP_ALIVE,
    KEEP_ALIVE_SECONDS,
    STREAM_HEADERS,
    STREAM_RESPONSE_HEADERS,
    STREAM_SECONDS,
    stream_seconds,
)
from projections.catalog import ALL_PROJECTIONS

FOLLOWED_LOGS = sorted({log for projection in ALL_PROJECTIONS for log in projection.leaders})
"""The event logs the read models follow: the only ones a position may name."""
_POSITION = f"({'|'.join(FOLLOWED_LOGS)}):[0-9]{{1,19}}"
MIN_POSITION_PATTERN = f"^{_POSITION}( *, *{_POSITION})*$"
"""What ``X-Min-Position`` accepts: positions as commands return them (``<Log>:<id>``), comma-separated."""
def one_of(names: Iterable[str], what: str) -> Any:
    """A path parameter naming one of ``names`` (``what`` they are): documented, and checked by its pattern."""
    names = list(names)
    return PathParameter(description=f"{', '.join(names)}: {what}", pattern=f"^({'|'.join(names)})$")


Cursor = Annotated[str | None, QueryParameter(required=False, description="The `next_cursor` of the previous page")]
"""Where a list operation's next page starts (``None``: the first page)."""
PageLimit = Annotated[int, QueryParameter(ge=1, le=100, description="At most this many per page")]
"""How many items a list operation answers at most (20 by default)."""
MinPosition = Annotated[str | None, HeaderParameter(
    name="X-Min-Position", required=False, pattern=MIN_POSITION_PATTERN,
    examples=[Example(summary="after one command", value="Consultations:42"),
              Example(summary="after commands to two contexts", value="Consultations:42, Scheduling:17")],
    description="Read-your-writes: an X-Event-Position a command returned (or several, comma-separated); the "
                "answer waits (≤1 s) for the views to reach it, else says X-Projection-Stale: true")]
PreferWait = Annotated[str | None, HeaderParameter(
    name="Prefer", required=False,
    description="`wait=N` (RFC 7240): while the booking saga has not decided (status `REQUESTED`), answer once it "
                "has, or after N seconds (at most 30); `Preference-Applied` says it was honoured")]
LastEventId = Annotated[str | None, HeaderParameter(
    name="Last-Event-ID", required=False,
    description="The `id` of the last event a reconnecting client saw: the stream starts with the next change "
                "instead of the current state")]
IfMatch = Annotated[str | None, HeaderParameter(name="If-Match", required=False,
                                          description='The ETag last read ("<version>"); 409 if it changed')]

EVENT_POSITION = "X-Event-Position"
"""On command responses: where the command's events stand in their log (``<Log>:<id>``)."""
EVENT_POSITION_HEADER = ResponseHeader(
    name=EVENT_POSITION, documentation_only=True, required=True, example="Consultations:42",
    description="Where the command's events stand in their log (`<Log>:<id>`); send it back as `X-Min-Position` "
                "to read your own write")
ETAG_HEADER = ResponseHeader(
    name="ETag", documentation_only=True, required=True, example='"3"',
    description='The consultation\'s version, `"<version>"`; send it as `If-Match` to cancel only that version')
PREFERENCE_APPLIED_HEADER = ResponseHeader(
    name="Preference-Applied", documentation_only=True, example="wait=10",
    description="The `Prefer` preference honoured (RFC 7240): `wait=N` when the answer waited for the decision")
FRESHNESS_HEADERS = [
    ResponseHeader(name="X-Projection-Position", documentation_only=True, example="42",
                   description="Events of the logs the answering views have applied (absent where this service "
                               "cannot see the logs' heads)"),
    ResponseHeader(name="X-Projection-Lag", documentation_only=True, example="0",
                   description="Events recorded but not yet applied to those views (absent likewise)"),
    ResponseHeader(name="X-Projection-Stale", documentation_only=True, example="true",
                   description="`true` when the views had not reached `X-Min-Position` within the wait (1 s)"),
]
"""What a read-model answer says about its freshness (``freshness_headers`` and ``read_after``)."""


class ConsultationController(Controller):
    path = "/v1/consultations"
    tags = ["consultations"]

    @post(operation_id="bookConsultation", summary="Book a consultation", status_code=202, sync_to_thread=True,
          response_headers=[EVENT_POSITION_HEADER, ResponseHeader(
              name="Location", documentation_only=True, required=True, example="/v1/consultations/{consultation_id}",
              description="The consultation to poll until the saga has decided")])
    def book(self, data: JSONBody[BookConsultation], clinic: NamedDependency[Clinic],
             request: Request[Principal, Any, Any], idempotency: IdempotencyKeyHeader = None) -> Response[BookingAccepted]:
        """Request a consultation; the booking saga confirms or rejects it (poll its status). With an
        ``Idempotency-Key``, a retry is answered with the same consultation instead of booking again."""
        access.allow(access.may_book_for(request.user, str(data.patient_id)),
                     "a patient may only book for themself")
        accepted = clinic.book(data.patient_id, data.doctor_id, data.start, data.reason,
                               key=idempotency_key(request, idempotency, data))
        body = BookingAccepted(accepted.consultation_id, accepted.saga_id, accepted.status)  # type: ignore[arg-type]
        return Response(body, status_code=202, headers={"Location": f"{self.path}/{accepted.consultation_id}",
                                                        EVENT_POSITION: clinic.position(clinic.require(ConsultationsApplication))})

    @get("/{consultation_id:uuid}", operation_id="getConsultation", summary="Read a consultation",
         response_headers=[ETAG_HEADER, *FRESHNESS_HEADERS, PREFERENCE_APPLIED_HEADER])
    async def read(self, consultation_id: FromPath[UUID], clinic: NamedDependency[Clinic],
                   request: Request[Principal, Any, Any], min_position: MinPosition = None,
                   prefer: PreferWait = None) -> Response[Consultation]:
        """A consultation and its status, from the read model; visible to its patient, its doctor and admins.
        With ``Prefer: wait=N`` a booking not yet decided is answered once the saga decides (or after N s)."""
        view, headers = await read_consultation(clinic, consultation_id, request.user, min_position, prefer)
        return Response(consultation_body(view), headers=headers)

    @get("/{consultation_id:uuid}/events", operation_id="streamConsultationEvents",
         summary="Follow a consultation's status (server-sent events)", media_type="text/event-stream",
         response_headers=STREAM_RESPONSE_HEADERS)
    async def events(self, consultation_id: FromPath[UUID], clinic: NamedDependency[Clinic],
                     request: Request[Principal, Any, Any],
                     last_event_id: LastEventId = None) -> ServerSentEvent:
        """The consultation now, then again at every change of it, as server-sent events (``event:
        consultation``, ``id:`` its version, ``data:`` the consultation as ``getConsultation`` returns it);
        a comment every 15 s keeps the connection open. The stream ends once the consultation can change no
        more (rejected, cancelled, completed, no-show) or after 5 minutes; reconnect with ``Last-Event-ID``
        to skip what you saw. Visible to whoever may read the consultation."""
        first = await readable(clinic, consultation_id, request.user)
        since = _version_in(last_event_id)
        return ServerSentEvent(status_stream(clinic, first, since, stream_seconds(request)), headers=STREAM_HEADERS)

    @post("/{consultation_id:uuid}/cancel", operation_id="cancelConsultation",
          summary="Cancel a consultation", status_code=200, sync_to_thread=True,
          response_headers=[EVENT_POSITION_HEADER])
    def cancel(self, consultation_id: FromPath[UUID], data: JSONBody[CancelConsultation], clinic: NamedDependency[Clinic],
               request: Request[Principal, Any, Any], if_match: IfMatch = None,
               idempotency: IdempotencyKeyHeader = None) -> Response[ConsultationCancelled]:
        """Cancel a consultation (its patient, or an admin for the clinic): a confirmed one frees its slot;
        one still ``REQUESTED`` stops its booking saga, which gives back whatever slot it held."""
        consultations = clinic.require(ConsultationsApplication)
        principal = request.user
        with access.masking(principal, NOT_ALLOWED):
            once(consultations, idempotency_key(request, idempotency, data), lambda: consultations.cancel(
                consultation_id, data.reason, by_patient=not principal.has_role(Role.ADMIN),
                expected_version=_expected_version(if_match), check=_rule(principal, access.may_cancel)), nothing)
        return Response(ConsultationCancelled(consultation_id=consultation_id, status="CANCELLED"),
                        headers={EVENT_POSITION: clinic.position(consultations)})

    @post("/{consultation_id:uuid}/reschedule", operation_id="rescheduleConsultation",
          summary="Move a consultation to another start", status_code=202, sync_to_thread=True,
          response_headers=[EVENT_POSITION_HEADER, ResponseHeader(
              name="Location", documentation_only=True, required=True, example="/v2/consultations/{consultation_id}",
              description="The consultation to read: `reschedule` says pending, failed, or is gone once it moved")])
    def reschedule(self, consultation_id: FromPath[UUID], data: JSONBody[RescheduleConsultation],
                   clinic: NamedDependency[Clinic], request: Request[Principal, Any, Any], if_match: IfMatch = None,
                   idempotency: IdempotencyKeyHeader = None) -> Response[RescheduleAccepted]:
        """Move a confirmed consultation to another open slot of its doctor (its patient, or an admin). The
        reschedule saga holds and books the new slot before the consultation moves and the old slot is
        released; if any step fails, the consultation keeps its start and slot. One at a time: 409 while
        another is under way."""
        consultations, principal = clinic.require(ConsultationsApplication), request.user
        with access.masking(principal, NOT_ALLOWED):
            saga_id = once(consultations, idempotency_key(request, idempotency, data), lambda: consultations.reschedule(
                consultation_id, data.start, expected_version=_expected_version(if_match),
                check=_rule(principal, access.may_reschedule)), started_reschedule)
        return Response(RescheduleAccepted(consultation_id, saga_id, data.start, "pending"), status_code=202,
                        headers={"Location": f"/v2/consultations/{consultation_id}",
                                 EVENT_POSITION: clinic.position(consultations)})

    @post("/{consultation_id:uuid}/complete", operation_id="completeConsultation",
          summary="Record that a consultation took place", status_code=200, sync_to_thread=True,
          response_headers=[EVENT_POSITION_HEADER])
    def complete(self, consultation_id: FromPath[UUID], clinic: NamedDependency[Clinic],
                 request: Request[Principal, Any, Any],
                 idempotency: IdempotencyKeyHeader = None) -> Response[ConsultationEnded]:
        """Its doctor (or an admin) records that a confirmed consultation took place; its slot stays booked."""
        return _end(clinic, request, consultation_id, idempotency, "COMPLETED")

    @post("/{consultation_id:uuid}/no-show", operation_id="markConsultationNoShow",
          summary="Record that the patient did not come", status_code=200, sync_to_thread=True,
          response_headers=[EVENT_POSITION_HEADER])
    def no_show(self, consultation_id: FromPath[UUID], clinic: NamedDependency[Clinic],
                request: Request[Principal, Any, Any],
                idempotency: IdempotencyKeyHeader = None) -> Response[ConsultationEnded]:
        """Its doctor (or an admin) records that the patient did not come to a confirmed consultation."""
        return _end(clinic, request, consultation_id, idempotency, "NO_SHOW")

    @post("/{consultation_id:uuid}/notes", operation_id="addClinicalNote",
          summary="Add a clinical note", status_code=201, sync_to_thread=True)
    def add_note(self, consultation_id: FromPath[UUID], data: JSONBody[AddNote], clinic: NamedDependency[Clinic],
                 request: Request[Principal, Any, Any], idempotency: IdempotencyKeyHeader = None) -> NoteAdded:
        """Add a clinical note (its doctor or an admin) to a confirmed or completed consultation."""
        consultations, principal = clinic.require(ConsultationsApplication), request.user
        with access.masking(principal, NOT_ALLOWED):
            once(consultations, idempotency_key(request, idempotency, data), lambda: consultations.add_note(
                consultation_id, principal.sub, data.text, _rule(principal, access.may_use_notes)), nothing)
        return NoteAdded(consultation_id=consultation_id)

    @get("/{consultation_id:uuid}/notes", operation_id="listClinicalNotes",
         summary="List a consultation's clinical notes", sync_to_thread=True)
    def notes(self, consultation_id: FromPath[UUID], clinic: NamedDependency[Clinic], request: Request[Principal, Any, Any]) -> Notes:
        """The clinical notes, oldest first (its doctor or an admin only)."""
        consultations, principal = clinic.require(ConsultationsApplication), request.user
        with access.masking(principal, NOT_ALLOWED):
            written = consultations.notes(consultation_id, _rule(principal, access.may_use_notes))
        return Notes(consultation_id=consultation_id, notes=written)


NOT_ALLOWED = "not allowed for this consultation (or there is no such consultation)"


def _end(clinic: Clinic, request: Request[Principal, Any, Any], consultation_id: UUID, idempotency: str | None,
         status: Literal["COMPLETED", "NO_SHOW"]) -> Response[ConsultationEnded]:
    """Complete it, or mark it a no-show, as its doctor or an admin."""
    consultations, principal = clinic.require(ConsultationsApplication), request.user
    end = consultations.complete if status == "COMPLETED" else consultations.mark_no_show
    with access.masking(principal, NOT_ALLOWED):
        once(consultations, idempotency_key(request, idempotency),
             lambda: end(consultation_id, _rule(principal, access.may_attend)), nothing)
    return Response(ConsultationEnded(consultation_id, status), headers={EVENT_POSITION: clinic.position(consultations)})


def read_after(clinic: Clinic, min_position: str | None) -> dict[str, str]:
    """Wait (bounded) for the views to reach a position a command returned; say so if they did not."""
    if not min_position:
        return {}
    reached = clinic.require(ReadModels).wait_for(parse_positions(min_position))
    return {} if reached else {"X-Projection-Stale": "true"}


async def read_after_async(clinic: Clinic, min_position: str | None) -> dict[str, str]:
    """``read_after`` on the event loop: woken by the read models' change feed."""
    if not min_position:
        return {}
    reached = await clinic.require(ReadModels).wait_for_async(parse_positions(min_position))
    return {} if reached else {"X-Projection-Stale": "true"}


async def read_consultation(clinic: Clinic, consultation_id: UUID, principal: Principal, min_position: str | None,
                            prefer: str | None = None) -> tuple[ConsultationView, dict[str, str]]:
    """The view (if ``principal`` may read it) with its ETag and freshness headers (v1 and v2): from this
    process's cache, else with its positions in one Redis round trip; with ``Prefer: wait=N``, once decided."""
    stale = await read_after_async(clinic, min_position)
    read = await readable(clinic, consultation_id, principal)
    applied = {}
    wait = prefer_wait(prefer)
    if wait is not None:
        read = await clinic.require(ReadModels).decided(consultation_id, wait)
        applied = {PREFERENCE_APPLIED: f"wait={wait:g}"}
    return read.view, {"ETag": f'"{read.view.version}"', **freshness_values(read.freshness), **stale, **applied}


async def readable(clinic: Clinic, consultation_id: UUID, principal: Principal) -> ConsultationRead:
    """The consultation if ``principal`` may read it; to one who may not read every consultation, a
    missing one is refused exactly like someone else's (``access.masking``)."""
    with access.masking(principal, NOT_ALLOWED):
        read = await clinic.require(ReadModels).consultation_read_async(consultation_id)
    access.allow(access.may_read(principal, read.view), NOT_ALLOWED)
    return read


PREFERENCE_APPLIED = "Preference-Applied"
MAX_WAIT_SECONDS = 30.0
"""The longest ``Prefer: wait`` honoured; a longer one waits this long."""
_WAIT = re.compile(r"(?:^|[;,\s])wait\s*=\s*\"?(\d+(?:\.\d+)?)\"?", re.IGNORECASE)


def prefer_wait(prefer: str | None) -> float | None:
    """The seconds a ``Prefer`` header's ``wait`` preference asks for, at most ``MAX_WAIT_SECONDS``
    (``None``: none asked; RFC 7240 says a preference the server cannot read is ignored)."""
    found = _WAIT.search(prefer or "")
    return min(float(found.group(1)), MAX_WAIT_SECONDS) if found else None


SETTLED = frozenset({"REJECTED", "CANCELLED", "COMPLETED", "NO_SHOW"})
"""Statuses a consultation never leaves: its stream ends there."""


async def status_stream(clinic: Clinic, first: ConsultationRead, since: int | None,
                        seconds: float = STREAM_SECONDS) -> AsyncIterator[ServerSentEventMessage]:
    """The consultation's events: now (unless ``since`` is its version), then at each change, with a
    keep-alive comment between, until it is settled or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    read = first
    while True:
        if read.view.version != since:
            since = read.view.version
            yield ServerSentEventMessage(data=msgspec.json.encode(consultation_body(read.view)).decode(),
                                         event="consultation", id=str(since))
            if read.view.status in SETTLED:
                return
        elif time.monotonic() < deadline:
            yield KEEP_ALIVE
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        read = await clinic.require(ReadModels).changes_of(read.view.consultation_id, since,
                                                   min(KEEP_ALIVE_SECONDS, remaining))


def _version_in(last_event_id: str | None) -> int | None:
    """The version a reconnecting client saw last (``Last-Event-ID``; anything else: none)."""
    return int(last_event_id) if last_event_id and last_event_id.isdigit() else None


def consultation_body(view: ConsultationView) -> Consultation:
    return Consultation(view.consultation_id, view.patient_id, view.doctor_id, view.start,
                        view.status, view.reason, view.rejection_reason)  # type: ignore[arg-type]


def freshness_headers(clinic: Clinic, *projections: str) -> dict[str, str]:
    """How fresh a read-model answer is: the views' position in the event logs and their lag."""
    return freshness_values(clinic.require(ReadModels).freshness(*projections))


def freshness_values(freshness: Freshness | None) -> dict[str, str]:
    if freshness is None:
        return {}
    return {"X-Projection-Position": str(freshness.position), "X-Projection-Lag": str(freshness.lag)}


def _rule(principal: Principal, rule: Callable[[Principal, ConsultationView], bool]) -> Check:
    """``rule`` for ``principal`` as the application's check of the consultation it loads."""
    return lambda view: access.allow(rule(principal, view), NOT_ALLOWED)


def _expected_version(if_match: str | None) -> int | None:
    """The version an ``If-Match`` ETag names (``*`` or none: any version)."""
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    if not tag.isdecimal():
        raise VersionConflictError(f"If-Match {if_match} names no version of the consultation")
    return int(tag)
