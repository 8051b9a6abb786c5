"""How the OpenAPI document is made: Litestar generates it from the routes, ``complete`` finishes it.

Litestar writes paths, parameters and schemas from the handlers (their ``summary=`` and
docstring). ``complete`` then adds, to every operation, what a consumer needs and Litestar
cannot know:

- its **error responses**, all ``application/problem+json`` with one example per problem type:
  the ones every operation *of its kind* can answer (derived from the operation itself, see
  ``framework_problems``) and the ones its handler's own rules answer (``OUTCOMES``, one row per
  operation, beside ``authorization.REQUIRED_SCOPE``);
- **examples** of its request body and responses, from ``examples.EXAMPLES`` (by schema);
- the ``X-Correlation-Id`` header every response carries, ``WWW-Authenticate`` on 401/403.

Both the served ``/schema/openapi.json`` and ``clinic openapi`` (``spec.py``) go through it,
so a new endpoint gets all of this by adding its two rows. docs/api.md says how.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
from litestar import Request
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, Contact, License, SecurityScheme, Tag

from interfaces.http.authorization import REQUIRED_SCOPE
from interfaces.http.deprecation import DEPRECATIONS, document_deprecations, gone_detail
from interfaces.http.examples import EXAMPLE_IDS, EXAMPLES, PATH_EXAMPLES, schema_examples
from interfaces.http.idempotency import IDEMPOTENCY_KEY
from interfaces.http.problems import (
    ACCEPTED_BODY,
    PROBLEM_BASE,
    PROBLEM_JSON,
    RETRY_AFTER_SECONDS,
    UNAVAILABLE,
    UNAVAILABLE_DETAIL,
)
from interfaces.http.schemas import Problem, RequestBody

PROBLEM_TYPES: dict[str, tuple[int, str, str]] = {
    "malformed-body": (400, "Malformed request body", "the body is not valid JSON: Input data was truncated"),
    "invalid-parameter": (400, "Invalid request parameter", "Validation failed for GET /v1/..."),
    "invalid-query": (400, "Invalid audit query", "give a version or a moment, not both"),
    "unauthenticated": (401, "Authentication required", "invalid bearer token: expired_token: The token is expired"),
    "insufficient-scope": (403, "Token scope insufficient",
                           "the token lacks the scope this operation requires: consultations:write"),
    "forbidden": (403, "Not allowed", "not allowed for this consultation (or there is no such consultation)"),
    "http-404": (404, "Not Found", "Not Found"),
    "not-found": (404, "Resource not found", f"consultation {EXAMPLE_IDS['consultation']} not found"),
    "slot-already-open": (409, "Slot already open", "a slot at one of these starts is already open"),
    "slot-in-use": (409, "Slot is held or booked", "the slot is held or booked"),
    "invalid-state": (409, "Not allowed in the current state", "cannot cancel a REJECTED consultation"),
    "version-conflict": (409, "Version conflict", "the consultation is at version 3, not \"2\""),
    "too-many-webhooks": (409, "Too many webhook subscriptions",
                          "at most 10 webhook subscriptions per client; delete one first"),
    "invalid-webhook": (422, "Invalid webhook subscription", "url: the scheme must be https"),
    "http-413": (413, "Request Entity Too Large", "Request Entity Too Large"),
    "unsupported-media-type": (415, "Unsupported media type",
                               "a request body must be application/json, not text/plain"),
    "gone": (410, "Operation withdrawn", gone_detail("getConsultation", DEPRECATIONS["getConsultation"],
                                                     {"consultation_id": EXAMPLE_IDS["consultation"]})),
    "invalid-input": (422, "Invalid request body", "Expected `str`, got `int` - at `$.reason`"),
    "idempotency-key-reused": (422, "Idempotency key already used", "this Idempotency-Key was already used for a "
                               "different request; use a new key for a new request"),
    "unavailable": (UNAVAILABLE[0], UNAVAILABLE[2], UNAVAILABLE_DETAIL),
}
"""Each problem type (``urn:clinic:problem:<slug>``) an operation can answer: status, title and an
example detail, as ``problems.py`` writes them (``tests/e2e/test_openapi_lint.py`` checks titles)."""

STATUS_DESCRIPTIONS = {
    400: "Malformed request: the body is not JSON, or a parameter or the query is invalid",
    401: "Missing or invalid bearer token (`WWW-Authenticate: Bearer`)",
    403: "The token lacks the operation's scope, or the caller's role or ownership does not allow it",
    404: "No such resource (an id in the path that is not a UUID names none)",
    409: "Conflict with the resource's current state or version",
    410: "Gone: the operation was withdrawn at its sunset; `Link` names its successor and migration guide",
    413: "The request body is over the size limit (64 KiB by default)",
    415: "The body is not declared `application/json` (`Content-Type` missing or another type); "
         "`Accept` names the one accepted",
    422: "The body does not match the schema (`errors` names the field), or the `Idempotency-Key` was used "
         "for a different request",
    503: "A store or service this operation needs is not answering (an outage, not a defect): nothing was "
         "done; retry after `Retry-After` seconds",
}

OUTCOMES: dict[str, tuple[str, ...]] = {
    "live": (),
    "ready": (),
    "registerPatient": ("forbidden",),
    "getPatient": ("forbidden", "not-found"),
    "listPatientRecordAccess": ("forbidden",),  # an unknown patient's log is empty, not a 404
    "registerDoctor": ("forbidden",),
    "deactivateDoctor": ("forbidden", "not-found", "version-conflict"),
    "listDoctorSlots": (),
    "listDoctors": (),
    "getDoctor": ("not-found",),
    "openSlots": ("forbidden", "not-found", "slot-already-open"),  # a racing duplicate is slot-already-open too
    "closeSlot": ("forbidden", "not-found", "slot-in-use", "version-conflict"),
    "openAvailability": ("forbidden", "not-found", "slot-already-open"),  # only a racing call opens one first
    "reopenSlot": ("forbidden", "not-found", "version-conflict"),
    "bookConsultation": ("forbidden",),
    "getConsultation": ("forbidden", "not-found"),
    "getConsultationV2": ("forbidden", "not-found"),
    "streamConsultationEvents": ("forbidden", "not-found"),
    "cancelConsultation": ("forbidden", "not-found", "invalid-state", "version-conflict"),
    "rescheduleConsultation": ("forbidden", "not-found", "invalid-state", "version-conflict"),
    "completeConsultation": ("forbidden", "not-found", "invalid-state", "version-conflict"),
    "markConsultationNoShow": ("forbidden", "not-found", "invalid-state", "version-conflict"),
    "listPatientConsultations": ("forbidden",),
    "getDoctorAgenda": ("forbidden",),
    "addClinicalNote": ("forbidden", "not-found", "invalid-state", "version-conflict"),
    "listClinicalNotes": ("forbidden", "not-found"),
    "listSagas": ("forbidden",),
    "getSaga": ("forbidden", "not-found"),
    "streamSagaChanges": ("forbidden",),
    "streamSagaEvents": ("forbidden", "not-found"),
    "retrySagaValidation": ("forbidden", "not-found", "invalid-state", "version-conflict"),
    "compensateSaga": ("forbidden", "not-found", "invalid-state", "version-conflict"),
    "auditAggregate": ("forbidden", "not-found", "invalid-query"),
    "listReadModels": ("forbidden",),
    "getReadModel": ("forbidden",),  # an unknown name is an invalid parameter (its pattern lists them)
    "rebuildReadModel": ("forbidden",),  # its key's reuse for another is added with the header
    "streamReadModelRebuild": ("forbidden", "not-found"),  # none started since the projection worker started
    "createWebhook": ("forbidden", "invalid-webhook", "too-many-webhooks", "version-conflict"),
    "listWebhooks": ("forbidden",),
    "getWebhook": ("forbidden", "not-found"),
    "deleteWebhook": ("forbidden", "not-found", "version-conflict"),
    "listWebhookDeliveries": ("forbidden", "not-found"),
}
"""operationId -> the problem types its handler's own rules answer (role and ownership refusals,
missing resources, conflicts). Those any operation of its kind answers are added by
``framework_problems``; this table lists only what reading the handler tells."""

TAGS = [
    Tag(name="consultations", description="Booking, reading and cancelling consultations; clinical notes; "
                                          "a patient's consultations and a doctor's agenda"),
    Tag(name="health", description="Liveness and readiness probes (no token)"),
    Tag(name="notifications", description="Webhook subscriptions: consultation outcomes pushed to clients, "
                                          "signed, retried until taken, with a delivery log"),
    Tag(name="oversight", description="Booking sagas and audit trails, for auditors and admins"),
    Tag(name="registry", description="Patients and doctors; writes are for admins"),
    Tag(name="scheduling", description="Doctors' slots"),
]

PATH_PARAMETERS = {
    "patient_id": "The patient's id (a patient's token `sub`)",
    "doctor_id": "The doctor's id (a doctor's token `sub`)",
    "consultation_id": "The consultation's id (`consultation_id` in the booking's 202)",
    "saga_id": "The booking or reschedule saga's id (`saga_id` in the booking's or reschedule's 202)",
    "slot_id": "The slot's id (`slot_id` in the doctor's slot listing)",
    "aggregate_id": "The aggregate's id",
    "webhook_id": "The webhook subscription's id (`webhook_id` in its 201)",
}
"""What each id in a path names (the same name means the same thing in every path)."""

CORRELATION_HEADER = {
    "description": "The request's correlation id (the one sent, if valid, else a new one); "
                   "stamped on every event the request causes",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:\\-]{1,128}$"},
    "example": "3b0e6f2a-9a51-4c39-8f43-0f6d2a7c1d55",
}
RETRY_AFTER_HEADER = {
    "description": "Seconds to wait before retrying (RFC 9110 §10.2.3)",
    "schema": {"type": "integer", "minimum": 1},
    "example": RETRY_AFTER_SECONDS,
}
ACCEPT_HEADER = {
    "description": "The media type a request body must have (RFC 9110 §15.5.16)",
    "schema": {"type": "string", "enum": [ACCEPTED_BODY]},
    "example": ACCEPTED_BODY,
}
CHALLENGE_HEADER = {
    "description": "RFC 6750 challenge: how to authenticate, or (403) which scope was missing",
    "schema": {"type": "string"},
    "example": 'Bearer realm="clinic"',
}


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """Problem-details responses for ``statuses``. Not needed on the public API's handlers, whose
    error responses ``complete`` adds; kept for apps that are not completed."""
    return {status: ResponseSpec(data_container=Problem, description=STATUS_DESCRIPTIONS[status],
                                 media_type=PROBLEM_JSON, generate_examples=False)
            for status in sorted({400, *statuses})}


UNPARSED_HEADERS = frozenset({"If-Match", "Prefer", "Last-Event-ID"})
"""Headers compared or read leniently, never refused: an unexpected ``If-Match`` is a 409 (version-conflict);
a ``Prefer`` or ``Last-Event-ID`` the API cannot read is ignored (RFC 7240, the SSE standard)."""


def framework_problems(operation: dict[str, Any]) -> list[str]:
    """The problem types any operation like this one can answer, whatever its handler does."""
    problems = []
    places = {(p["in"], p.get("schema", {}).get("format")) for p in operation.get("parameters", [])
              if p["name"] not in UNPARSED_HEADERS}
    if "requestBody" in operation:
        problems += ["malformed-body", "http-413", "unsupported-media-type", "invalid-input"]
    if any(where in ("query", "header") or (where == "path" and fmt != "uuid") for where, fmt in places):
        problems.append("invalid-parameter")
    if REQUIRED_SCOPE.get(operation.get("operationId", "")):
        problems += ["unauthenticated", "insufficient-scope"]
    if any(p["name"] == IDEMPOTENCY_KEY for p in operation.get("parameters", [])):
        problems.append("idempotency-key-reused")
    if any(where == "path" and fmt == "uuid" for where, fmt in places):
        problems.append("http-404")  # a path id that is not a UUID matches no route
    if operation.get("operationId") in DEPRECATIONS:
        problems.append("gone")  # past its sunset (interfaces/http/deprecation.py)
    if "health" not in operation.get("tags", ()):
        problems.append("unavailable")  # a store outage (probes answer it themselves)
    return problems


def problems_of(operation: dict[str, Any]) -> list[str]:
    """Every problem type ``operation`` can answer: its kind's, then its handler's (``OUTCOMES``)."""
    found = framework_problems(operation) + list(OUTCOMES.get(operation.get("operationId", ""), ()))
    return list(dict.fromkeys(found))


def problem_example(slug: str, path: str) -> dict[str, Any]:
    status, title, detail = PROBLEM_TYPES[slug]
    example: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail,
                               "instance": path, "correlation_id": CORRELATION_HEADER["example"]}
    if slug in ("malformed-body", "invalid-input", "invalid-parameter"):
        example["errors"] = [{"field": "$.reason" if slug == "invalid-input" else "$", "message": detail}]
    return example


def error_responses(operation: dict[str, Any], path: str) -> dict[str, Any]:
    """One ``application/problem+json`` response per status, one example per problem type."""
    by_status: dict[int, list[str]] = {}
    for slug in problems_of(operation):
        by_status.setdefault(PROBLEM_TYPES[slug][0], []).append(slug)
    instance = example_path(path)
    return {str(status): {
        "description": STATUS_DESCRIPTIONS[status],
        "content": {PROBLEM_JSON: {
            "schema": {"$ref": "#/components/schemas/Problem"},
            "examples": {slug: {"summary": PROBLEM_TYPES[slug][1], "value": problem_example(slug, instance)}
                         for slug in slugs},
        }},
    } for status, slugs in sorted(by_status.items())}


def example_path(path: str) -> str:
    """``path`` with the example ids in its parameters (the example problems' ``instance``)."""
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return path.format(**{name: PATH_EXAMPLES.get(name, EXAMPLE_IDS["consultation"]) for name in names})


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of the generated ``document`` with every operation's errors, examples and headers,
    and deprecated operations marked (``deprecation.document_deprecations``)."""
    document = copy.deepcopy(document)
    examples = schema_examples(EXAMPLES)
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            _complete_operation(path, operation, examples)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(msgspec.json.schema_components([Problem], ref_template="#/components/schemas/{name}")[1])
    for name in _closed_bodies():
        if name in schemas:
            schemas[name]["additionalProperties"] = False
    return document_deprecations(document)


def _closed_bodies(struct: type[RequestBody] = RequestBody) -> Iterator[str]:
    """Every request body struct: each refuses unknown fields (``forbid_unknown_fields``), so its schema says
    ``additionalProperties: false``."""
    for subclass in struct.__subclasses__():
        yield subclass.__name__
        yield from _closed_bodies(subclass)


def _complete_operation(path: str, operation: dict[str, Any], examples: dict[str, Any]) -> None:
    responses = {code: response for code, response in operation.get("responses", {}).items()
                 if not code.startswith("4") or PROBLEM_JSON in response.get("content", {})}
    # a 4xx that is not problem+json is Litestar's default guess (its 400 ValidationException), never sent here
    responses.update(error_responses(operation, path))
    operation["responses"] = dict(sorted(responses.items()))
    for code, response in responses.items():
        _add_headers(code, response)
        _add_examples(response, examples, operation.get("operationId", ""))
        if code.startswith("4"):
            _add_problem_examples(code, response, path)
    if "requestBody" in operation:
        _add_examples(operation["requestBody"], examples, operation.get("operationId", ""))
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path" and "description" not in parameter:
            parameter["description"] = PATH_PARAMETERS.get(parameter["name"], "")
        if "schema" in parameter:
            parameter["schema"] = _without_null(parameter["schema"])


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter's schema as it travels: Litestar writes ``X | None`` as ``oneOf: [X, null]``, but a
    query or header parameter is absent or a string, never JSON ``null`` (``"null"`` would be refused)."""
    options = [option for option in schema.get("oneOf", []) if option != {"type": "null"}]
    if len(options) == 1 and len(schema["oneOf"]) == 2:
        schema = {**options[0], **{key: value for key, value in schema.items() if key != "oneOf"}}
    if isinstance(schema.get("type"), list) and "null" in schema["type"]:
        types = [kind for kind in schema["type"] if kind != "null"]
        schema = {**schema, "type": types[0] if len(types) == 1 else types}
        if "enum" in schema:
            schema["enum"] = [value for value in schema["enum"] if value is not None]
    return schema


def _add_problem_examples(code: str, response: dict[str, Any], path: str) -> None:
    """A 4xx a handler declared itself (``responses=``): its problem types' examples, by status."""
    for media in response.get("content", {}).values():
        if "examples" not in media:
            media["examples"] = {slug: {"summary": title, "value": problem_example(slug, example_path(path))}
                                 for slug, (status, title, _) in PROBLEM_TYPES.items() if str(status) == code}


def _add_headers(code: str, response: dict[str, Any]) -> None:
    headers = response.setdefault("headers", {})
    for header in headers.values():  # a handler's ResponseHeader: Litestar writes no schema (3.1 needs one)
        if "schema" not in header and "content" not in header:
            header["schema"] = {"type": "string"}
    headers["X-Correlation-Id"] = CORRELATION_HEADER
    if code in ("401", "403"):
        headers["WWW-Authenticate"] = CHALLENGE_HEADER
    if code == "415":
        headers["Accept"] = ACCEPT_HEADER
    if code == "503" and PROBLEM_JSON in response.get("content", {}):
        headers["Retry-After"] = RETRY_AFTER_HEADER


def _add_examples(holder: dict[str, Any], examples: dict[str, Any], operation_id: str) -> None:
    """Give every JSON media type whose schema is a named component its example (if it has none), and a
    server-sent event stream its shape and an example."""
    for media_type, media in holder.get("content", {}).items():
        if media_type == EVENT_STREAM:
            _describe_event_stream(media, examples, operation_id)
            continue
        name = media.get("schema", {}).get("$ref", "").rpartition("/")[2]
        if "examples" not in media and name in examples:
            media["examples"] = {name[0].lower() + name[1:]: {"value": examples[name]}}


EVENT_STREAM = "text/event-stream"


def _describe_event_stream(media: dict[str, Any], examples: dict[str, Any], operation_id: str) -> None:
    """A ``text/event-stream`` response: its schema is one event's (as OpenAPI 3.2's ``itemSchema`` and the
    tools that read 3.1 take it), the operation's row of ``EVENT_STREAMS`` says which events and what their
    data is; its example is one event."""
    description, names, example = EVENT_STREAMS[operation_id]
    media["schema"] = {
        "type": "object", "required": ["event", "data"],
        "description": f"One server-sent event (WHATWG HTML): {description}; `: keep-alive` comments between",
        "properties": {"event": {"type": "string", "enum": list(names)}, "data": {"type": "string"},
                       "id": {"type": "string"}}}
    media.setdefault("examples", {operation_id: {"summary": "one event", "value": example(examples)}})


def _event(name: str, data: Any, event_id: int | None = None) -> dict[str, str]:
    encoded = data if isinstance(data, str) else msgspec.json.encode(data).decode()
    return {"event": name, "data": encoded} | ({} if event_id is None else {"id": str(event_id)})


def _rebuild_event(examples: dict[str, Any]) -> dict[str, str]:
    done = examples["ReadModel"]["last_rebuild"]
    return _event("progress", {**done, "state": "running", "percent": 40, "done": 2784, "events_per_second": 5210.0,
                               "eta_seconds": 0.8})


EVENT_STREAMS: dict[str, tuple[str, tuple[str, ...], Callable[[dict[str, Any]], dict[str, str]]]] = {
    "streamConsultationEvents": (
        "`event: consultation`, `id:` the consultation's version, `data:` the consultation as `getConsultation` "
        "returns it", ("consultation",), lambda examples: _event("consultation", examples["Consultation"], 2)),
    "streamSagaEvents": ("`event: saga`, `data:` the saga as `getSaga` returns it", ("saga",),
                         lambda examples: _event("saga", examples["Saga"])),
    "streamSagaChanges": (
        "`event: sagas`, `id:` the position and `data:` `{\"position\": N}`: how far the saga views are into the "
        "booking log", ("sagas",), lambda _: _event("sagas", {"position": 5123}, 5123)),
    "streamReadModelRebuild": (
        "`event: progress`, `data:` the rebuild as `last_rebuild` shows it; then `event: ended`, `data:` `done` or "
        "`failed`", ("progress", "ended"), _rebuild_event),
}
"""Each operation that answers server-sent events: what its events are, their names, and an example."""


class CompletedJsonRenderPlugin(JsonRenderPlugin):
    """Serves ``/schema/openapi.json`` as ``complete`` finishes it (worked out once)."""

    def __init__(self) -> None:
        super().__init__()
        self._completed: tuple[dict[str, Any], bytes] | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._completed is None or self._completed[0] is not openapi_schema:  # Litestar rebuilt it
            self._completed = (openapi_schema, self.render_json(request, complete(openapi_schema)))
        return self._completed[1]


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Clinic booking API",
        version="1.0.0",
        description="Book clinic consultations; each booking is a saga that confirms or compensates. "
                    "Errors are RFC 9457 problem details (`application/problem+json`); see docs/api.md.",
        contact=Contact(name="Clinic platform team", email="platform@clinic.invalid"),
        license=License(name="Proprietary", identifier="LicenseRef-Proprietary"),
        path="/schema",
        use_handler_docstrings=True,
        tags=TAGS,
        render_plugins=[CompletedJsonRenderPlugin()],
        components=Components(security_schemes={
            "BearerToken": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT",
                                          description="ES256/RS256 JWT with sub, roles, scope, iss, aud, exp"),
        }),
        security=[{"BearerToken": []}],
    )
