"""Strict input: what a request must look like before its handler sees it (docs/api.md, "Bodies").

- An id in a path is a UUID in its canonical form only (``canonical_ids``): any other spelling of it
  (upper case, braces, ``urn:uuid:``, no hyphens) matches no route, like any other non-UUID (404).
- A query names only the operation's parameters, and a date-time in it is an RFC 3339 date-time with an
  offset (400 ``invalid-parameter``).
- A body is ``application/json`` (415), is JSON (400), and matches its schema (422): no coercion, no
  unknown field, no key twice in one object, date-times exactly RFC 3339 with an offset, and dates in
  their ``Plausible`` range (``schemas.SLOT_START``, ``schemas.BIRTH_DATE``) at the moment of the request.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from functools import cache
from typing import Annotated, Any, NoReturn, get_args, get_origin, get_type_hints
from uuid import UUID

import msgspec
from litestar import Request
from litestar.enums import ScopeType
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import QueryParameter
from litestar.types import ASGIApp, Receive, Scope, Send

from interfaces.http.problems import ACCEPTED_BODY, InvalidBodyError, UnsupportedMediaTypeError
from interfaces.http.schemas import Plausible

RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})")
"""An RFC 3339 ``date-time`` (section 5.6): a ``T`` between date and time, and an offset (``Z`` or ``±hh:mm``).
Whether its numbers name a real moment is for the parser to say."""


def canonical_ids(app: ASGIApp) -> ASGIApp:
    """Middleware (after routing): a UUID in the path spelt other than ``str(uuid)`` matches no route (404)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and not _ids_are_canonical(scope):
            raise NotFoundException()
        await app(scope, receive, send)

    return middleware


def _ids_are_canonical(scope: Scope) -> bool:
    values = scope.get("path_params") or {}
    if not any(isinstance(value, UUID) for value in values.values()):
        return True
    template, path = scope.get("path_template", "").rstrip("/").split("/"), scope["path"].rstrip("/").split("/")
    return len(template) == len(path) and all(
        text == str(values[part[1:-1]]) for part, text in zip(template, path, strict=True)
        if part.startswith("{") and isinstance(values.get(part[1:-1]), UUID))


async def strict_input(request: Request[Any, Any, Any]) -> None:
    """``before_request``: refuse a query parameter the operation does not have, a malformed date-time in the
    query, and a body that is not strictly its schema, before Litestar's lenient parsing sees any."""
    parameters = request.route_handler.parsed_fn_signature.parameters
    unknown = sorted(set(request.query_params) - set(_queries(parameters)) - set(_dependencies_queries(request)))
    if unknown:
        _refuse_query(request, unknown[0], "unknown query parameter")
    for name in _queries(parameters, date_times_only=True):
        text = request.query_params.get(name)
        if text is not None and not RFC3339.fullmatch(text):
            _refuse_query(request, name, "expected an RFC 3339 date-time with an offset, e.g. 2027-01-05T09:00:00Z")
    data = parameters.get("data")
    if data is not None:
        require_json(request.headers.get("content-type"))
        decode_strictly(await request.body(), data.annotation, request.app.state.clock())


def _refuse_query(request: Request[Any, Any, Any], name: str, message: str) -> NoReturn:
    raise ValidationException(f"Validation failed for {request.method} {request.url.path}",
                              extra=[{"key": name, "message": message, "source": "query"}])


def _queries(parameters: dict[str, Any], date_times_only: bool = False) -> list[str]:
    """The names (as sent) of a handler's query parameters (only its date-times)."""
    return [field.kwarg_definition.query or field.kwarg_definition.name or name
            for name, field in parameters.items() if isinstance(field.kwarg_definition, QueryParameter)
            and (not date_times_only or _is_date_time(field.annotation))]


def _dependencies_queries(request: Request[Any, Any, Any]) -> list[str]:
    """The query parameters the handler's dependencies take (a filter parsed once for several handlers)."""
    return [name for provider in request.route_handler.resolve_dependencies().values()
            if hasattr(provider, "parsed_fn_signature")
            for name in _queries(provider.parsed_fn_signature.parameters)]


def _is_date_time(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        return _is_date_time(get_args(annotation)[0])
    return annotation is datetime or any(arg is datetime for arg in get_args(annotation))


def require_json(content_type: str | None) -> None:
    """A body must say it is JSON: ``application/json``, with parameters (``; charset=utf-8``) or not."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type != ACCEPTED_BODY:
        raise UnsupportedMediaTypeError(
            f"a request body must be {ACCEPTED_BODY}, not {media_type or 'undeclared (no Content-Type)'}")


def decode_strictly(body: bytes, schema: type, now: datetime) -> Any:
    """Decode ``body`` as ``schema`` with no coercion ("1" is not 1, 0 is not a date), no key twice, every
    date-time exactly RFC 3339, every ``Plausible`` value in its range at ``now``. A number with a zero
    fraction (``30.0``) is an integer, as JSON Schema's ``integer`` says."""
    try:
        value: Any = _decode(body, schema)
    except msgspec.ValidationError as error:
        message = str(error)
        field = message.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in message else None
        raise InvalidBodyError(message, status=422, field=field) from None
    except msgspec.DecodeError as error:
        raise InvalidBodyError(f"the body is not valid JSON: {error}", status=400) from None
    try:
        raw = json.loads(body, object_pairs_hook=_Object)
    except (ValueError, RecursionError) as error:  # msgspec read it: only a nesting too deep for json gets here
        raise InvalidBodyError(f"the body is not valid JSON: {error}", status=400) from None
    _refuse_duplicate_keys(raw, "$")
    _refuse_implausible(value, raw, "$", now)
    return value


def _decode(body: bytes, schema: type) -> Any:
    try:
        return msgspec.json.decode(body, type=schema, strict=True)
    except msgspec.ValidationError as error:
        if not str(error).startswith("Expected `int`, got `float`"):
            raise
        return msgspec.convert(_INTEGRAL_FLOATS.decode(body), schema, strict=True)  # the rare body with 30.0


def _integral(number: str) -> int | float:
    value = float(number)
    return int(value) if value.is_integer() else value


_INTEGRAL_FLOATS = msgspec.json.Decoder(float_hook=_integral)
"""Untyped JSON whose integral floats are ints (``30.0`` → ``30``; a float field takes an int as it is)."""


class _Object(list[tuple[str, Any]]):
    """A JSON object as its members, in order, a key written twice kept twice."""


def _refuse_duplicate_keys(raw: Any, path: str) -> None:
    if isinstance(raw, _Object):
        seen: set[str] = set()
        for key, value in raw:
            if key in seen:
                raise InvalidBodyError(f"Object contains the key `{key}` more than once - at `{_member(path, key)}`",
                                       status=422, field=_member(path, key))
            seen.add(key)
            _refuse_duplicate_keys(value, _member(path, key))
    elif isinstance(raw, list):
        for index, item in enumerate(raw):
            _refuse_duplicate_keys(item, f"{path}[{index}]")


def _refuse_implausible(value: Any, raw: Any, path: str, now: datetime) -> None:
    """Walk the decoded ``value`` beside its ``raw`` JSON: date-times as written, ``Plausible`` ranges."""
    if isinstance(value, msgspec.Struct):
        members = dict(raw)
        for name, annotation in _fields(type(value)).items():
            _check_field(getattr(value, name), members.get(name), annotation, _member(path, name), now)
    elif isinstance(value, list):
        for index, (item, raw_item) in enumerate(zip(value, raw, strict=True)):
            _refuse_implausible(item, raw_item, f"{path}[{index}]", now)


def _check_field(value: Any, raw: Any, annotation: Any, path: str, now: datetime) -> None:
    if isinstance(value, datetime) and not RFC3339.fullmatch(raw):
        raise InvalidBodyError(f"Expected an RFC 3339 date-time with an offset (e.g. 2027-01-05T09:00:00Z), "
                               f"got `{raw}` - at `{path}`", status=422, field=path)
    for rule in get_args(annotation)[1:] if get_origin(annotation) is Annotated else ():
        refusal = rule.refusal(value, now) if isinstance(rule, Plausible) and isinstance(value, date) else None
        if refusal:
            raise InvalidBodyError(f"{refusal} - at `{path}`", status=422, field=path)
    _refuse_implausible(value, raw, path, now)


@cache
def _fields(struct: type) -> dict[str, Any]:
    return get_type_hints(struct, include_extras=True)


def _member(path: str, key: str) -> str:
    """The JSON path of member ``key`` of the object at ``path``, as msgspec writes it."""
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{json.dumps(key)}]"
