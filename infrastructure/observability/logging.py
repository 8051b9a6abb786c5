"""One JSON line per log record on stderr, from structlog and stdlib loggers alike.

Every record (ours, uvicorn's, httpx's, aiormq's, eventsourcing's, or a structlog logger's)
goes through one ``structlog.stdlib.ProcessorFormatter`` on the root logger, which adds:
``timestamp`` (ISO 8601, UTC), ``level``, ``service``, ``event`` (the message), ``logger``;
``correlation_id``, ``causation_id`` and ``saga_id`` of the work being done (the event metadata
the HTTP middleware and the followers set, else what ``log_context`` bound); ``trace_id`` and
``span_id`` of the current OpenTelemetry span, when there is one, or of the ``traceparent`` a line
about a stored event passes (the span that recorded it); and ``exc_info`` as text.
The formatter runs in the thread that logs, so context variables are the caller's.

Before rendering, ``redact`` replaces the values of secret-looking keys, and anything that looks
like a JWT, a bearer token, a password in a URL or an e-mail address in any string (the message
and a rendered exception included). Names, reasons and notes cannot be recognised: our code
never logs them (docs/observability-logs.md).
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import threading
import traceback
from collections.abc import Mapping
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode

import structlog
from opentelemetry import trace
from structlog.typing import EventDict

from domain.metadata import current_metadata

EVENT_IDS = ("correlation_id", "causation_id", "saga_id")
FIRST_FIELDS = ("timestamp", "level", "service", "event", "logger", *EVENT_IDS, "trace_id", "span_id")
REDACTED = "[redacted]"
SENSITIVE_KEYS = frozenset({
    "authorization", "proxy_authorization", "token", "access_token", "refresh_token", "id_token", "password",
    "passwd", "secret", "client_secret", "cookie", "set_cookie", "api_key", "kek", "data_kek", "private_key"})
SENSITIVE_SUFFIXES = ("_token", "_secret", "_password")
SENSITIVE_QUERY = SENSITIVE_KEYS | {"code", "code_verifier"}
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-(?!0{32})([0-9a-f]{32})-(?!0{16})([0-9a-f]{16})-[0-9a-f]{2}")
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
_HANDLER_MARK = "_clinic_log_handler"
_service = {"name": "clinic"}


def configure_logging(service: str, level: str = "INFO", json: bool = True, stream: TextIO | None = None) -> None:
    """Send every log record of this process, as one line, to ``stream`` (stderr); idempotent.

    Replaces the handler an earlier call installed (never handlers others added, such as a test
    runner's), routes warnings and uncaught exceptions through it, and configures structlog to
    hand its events to the same formatter.
    """
    _service["name"] = service
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(json=json, colors=bool(getattr(handler.stream, "isatty", lambda: False)())))
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in UVICORN_LOGGERS:  # undo uvicorn's default dictConfig, should one have run in this process
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
        logging.getLogger(name).setLevel(logging.NOTSET)
    logging.captureWarnings(True)
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, structlog.stdlib.PositionalArgumentsFormatter(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(), wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def formatter(json: bool = True, colors: bool = False) -> structlog.stdlib.ProcessorFormatter:
    """The one formatter: fields added, secrets redacted, then a JSON (or console) line."""
    renderer: Any = (structlog.processors.JSONRenderer(default=str) if json
                     else structlog.dev.ConsoleRenderer(colors=colors))
    return structlog.stdlib.ProcessorFormatter(
        pass_foreign_args=True, foreign_pre_chain=[structlog.stdlib.ExtraAdder(), access_fields],
        processors=[add_event_ids, structlog.contextvars.merge_contextvars, structlog.stdlib.add_log_level,
                    structlog.stdlib.add_logger_name, add_service,
                    structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"), add_trace_ids,
                    render_exception, structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact,
                    first_fields, renderer])


def log_context(**fields: Any) -> LogContext:
    """Every record logged inside the block (this task or thread) carries ``fields`` (``None``s skipped)."""
    return LogContext({k: v for k, v in fields.items() if v is not None})


class LogContext:
    """``log_context``'s block: binds the fields on entry and restores what they were on exit.

    A plain context manager over structlog's context variables, once per HTTP request: structlog's
    ``bound_contextvars`` copies the whole context to save the old values and costs it 2.5 times as much.
    """

    __slots__ = ("fields", "tokens")

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        self.tokens: Mapping[str, Any] = {}

    def __enter__(self) -> None:
        self.tokens = structlog.contextvars.bind_contextvars(**self.fields)

    def __exit__(self, *_: object) -> None:
        structlog.contextvars.reset_contextvars(**self.tokens)


def add_service(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """``service``: the process's service name."""
    event_dict.setdefault("service", _service["name"])
    return event_dict


def add_event_ids(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """Correlation, causation and saga ids of the events being caused now (explicit fields win)."""
    metadata = current_metadata()
    for key in EVENT_IDS:
        value = getattr(metadata, key)
        if value is not None:
            event_dict.setdefault(key, value)
    return event_dict


def add_trace_ids(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """``trace_id`` and ``span_id`` (hex) of the current span, if there is a valid one.

    A line about a stored event logged outside its trace (the projection worker reading it) passes the
    event's W3C ``traceparent`` as a field instead: it carries that trace's id and the id of the span the
    event was recorded in (explicit fields win over the current span), and the field is dropped.
    """
    traceparent = event_dict.pop("traceparent", None)
    if isinstance(traceparent, str) and (ids := _TRACEPARENT.match(traceparent)) is not None:
        event_dict.setdefault("trace_id", ids.group(1))
        event_dict.setdefault("span_id", ids.group(2))
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


def render_exception(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """``exc_info`` (``True``, an exception or a ``sys.exc_info()`` tuple) as the traceback's text."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple) and exc_info[0] is not None:
        event_dict["exc_info"] = "".join(traceback.format_exception(*exc_info)).rstrip()
    return event_dict


def access_fields(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """uvicorn's access records as fields (method, path, status); the client's address is dropped."""
    for copy in ("color_message", "message", "asctime"):  # uvicorn's coloured copy; another formatter's
        event_dict.pop(copy, None)
    args = event_dict.pop("positional_args", ())
    record = event_dict.get("_record")
    if record is None or record.name != "uvicorn.access":
        return event_dict
    if isinstance(args, tuple) and len(args) == 5:  # (client address, method, path + query, version, status)
        _, verb, path, version, status = args
        event_dict.update(event=f"{verb} {redact_query(str(path))} {status}", http_method=verb,
                          path=redact_query(str(path)), http_version=version, status=status)
    return event_dict


def redact_query(path: str) -> str:
    """``path?query`` with the values of secret query parameters (code, token, ...) replaced."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    pairs = [(k, REDACTED if _sensitive(k, SENSITIVE_QUERY) else v) for k, v in parse_qsl(query, keep_blank_values=True)]
    return f"{base}?{urlencode(pairs, safe='[]:/')}"


def redact(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """Secret keys' values replaced; JWTs, bearer tokens, URL passwords and e-mails removed from strings."""
    return {key: REDACTED if _sensitive(key) else _scrub(value) for key, value in event_dict.items()}


def scrub_text(text: str) -> str:
    """``text`` without anything that looks like a JWT, a bearer token, a URL's password or an e-mail."""
    if "eyJ" in text:
        text = _JWT.sub("[redacted-jwt]", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    if "@" in text:
        text = _EMAIL.sub("[redacted-email]", text)
    return text


def first_fields(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """The standard fields first, in a fixed order, so lines read alike."""
    return {**{key: event_dict[key] for key in FIRST_FIELDS if key in event_dict}, **event_dict}


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {k: REDACTED if isinstance(k, str) and _sensitive(k) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(item) for item in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return scrub_text(str(value))


@functools.lru_cache(maxsize=1024)
def _sensitive(key: str, names: frozenset[str] = SENSITIVE_KEYS) -> bool:
    normal = key.lower().replace("-", "_")
    return normal in names or normal.endswith(SENSITIVE_SUFFIXES)


def _log_uncaught(kind: type[BaseException], error: BaseException, tb: Any) -> None:
    logging.getLogger("clinic.uncaught").critical("uncaught exception", exc_info=(kind, error, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is not SystemExit and args.exc_value is not None:
        logging.getLogger("clinic.uncaught").critical(
            "uncaught exception in thread %s", getattr(args.thread, "name", "?"),
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
