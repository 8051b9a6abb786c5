"""One JSON line per record: fields, event and trace ids, redaction, exceptions, uvicorn's access lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import UTC, datetime

import pytest
import structlog
from aiormq.abc import Basic
from opentelemetry.sdk.trace import TracerProvider

from application.settings import Settings, SettingsError
from domain.metadata import event_metadata
from infrastructure.messaging.consumer import message_ids
from infrastructure.observability.logging import configure_logging, log_context
from tests.kit.logs import captured_logs

JWT = ("eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJwLTEiLCJyb2xlcyI6WyJQQVRJRU5UIl19"
       ".c2lnbmF0dXJlLXBhcnQtb2YtdGhlLXRva2Vu")
SIGNATURE = JWT.rsplit(".", 1)[1]
FIELDS = {"timestamp", "level", "service", "event", "logger", "correlation_id", "causation_id", "saga_id",
          "trace_id", "span_id"}


@pytest.fixture
def lines():
    """Configure logging into a buffer; returns a reader of the JSON objects written so far."""
    with captured_logs("booking") as buffer:
        def read() -> list[dict]:
            return [json.loads(line) for line in buffer.getvalue().splitlines()]

        read.buffer = buffer
        yield read


def in_a_span():
    """A span from a local provider (not the global one), made current."""
    return TracerProvider().get_tracer("test").start_as_current_span("work")


def test_a_stdlib_record_is_one_json_object_with_every_field(lines):
    # given a request's metadata and a current span
    with event_metadata(correlation_id="corr-1", causation_id="request:9", saga_id="saga-7"), in_a_span() as span:
        # when a stdlib logger logs
        logging.getLogger("clinic.test").warning("slot %s held", "s-1")
    [line] = lines()
    # then one object carries every field
    assert FIELDS <= line.keys()
    assert (line["level"], line["service"], line["event"], line["logger"]) == (
        "warning", "booking", "slot s-1 held", "clinic.test")
    assert datetime.fromisoformat(line["timestamp"]).utcoffset() == UTC.utcoffset(None)
    assert (line["correlation_id"], line["causation_id"], line["saga_id"]) == ("corr-1", "request:9", "saga-7")
    context = span.get_span_context()
    assert (line["trace_id"], line["span_id"]) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert list(line)[:5] == ["timestamp", "level", "service", "event", "logger"]


def test_a_structlog_record_comes_out_alike(lines):
    with event_metadata(correlation_id="corr-2", causation_id="c@3", saga_id="saga-8"), in_a_span():
        structlog.get_logger("clinic.structured").info("slot held", slot="s-2")
    [line] = lines()
    assert FIELDS <= line.keys()
    assert (line["event"], line["logger"], line["level"], line["slot"]) == (
        "slot held", "clinic.structured", "info", "s-2")
    assert (line["correlation_id"], line["causation_id"], line["saga_id"]) == ("corr-2", "c@3", "saga-8")


def test_outside_a_request_message_or_span_the_ids_are_absent(lines):
    logging.getLogger("clinic.test").info("started")
    [line] = lines()
    assert not {"correlation_id", "causation_id", "saga_id", "trace_id", "span_id"} & line.keys()
    assert line["service"] == "booking"


def test_a_line_about_a_stored_event_carries_the_trace_and_span_it_was_recorded_in(lines):
    # given an event's stored traceparent, logged about outside any span (the projection worker reading it)
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    log = logging.getLogger("clinic.test")
    log.debug("read event", extra={"correlation_id": "corr-3", "traceparent": f"00-{trace_id}-{span_id}-01"})
    # and inside another span, and with a malformed or an all-zero traceparent
    with in_a_span():
        log.debug("inside a span", extra={"traceparent": f"00-{trace_id}-{span_id}-01"})
    log.debug("malformed", extra={"traceparent": "00-xyz-01"})
    log.debug("invalid", extra={"traceparent": f"00-{'0' * 32}-{span_id}-01"})
    read, inside, malformed, invalid = lines()
    # then the line carries that trace and span, not the traceparent itself; the passed one wins over the span's
    assert (read["trace_id"], read["span_id"], read["correlation_id"]) == (trace_id, span_id, "corr-3")
    assert (inside["trace_id"], inside["span_id"]) == (trace_id, span_id)
    assert not {"traceparent", "trace_id", "span_id"} & (malformed.keys() | invalid.keys())
    assert "traceparent" not in read


def test_log_context_binds_ids_per_task_and_explicit_fields_win(lines):
    async def handle(correlation_id: str) -> None:
        with log_context(correlation_id=correlation_id, saga_id=None):
            await asyncio.sleep(0)  # the other task runs in between
            logging.getLogger("clinic.test").info("handled")

    async def both() -> None:
        await asyncio.gather(handle("a"), handle("b"))

    asyncio.run(both())
    with log_context(correlation_id="bound"):
        logging.getLogger("clinic.test").info("explicit", extra={"correlation_id": "given"})
    logging.getLogger("clinic.test").info("after")
    ours = [line for line in lines() if line["logger"] == "clinic.test"]  # not asyncio's own debug line
    handled, explicit, after = ours[:2], ours[2], ours[3]
    assert sorted(line["correlation_id"] for line in handled) == ["a", "b"]
    assert "saga_id" not in handled[0]
    assert explicit["correlation_id"] == "given"
    assert "correlation_id" not in after


def test_tokens_and_secrets_are_redacted_in_the_message_args_and_fields(lines):
    log = logging.getLogger("clinic.test")
    log.info(f"verifying {JWT}")
    log.info("Authorization: %s, via %s", f"Bearer {JWT}", "amqp://clinic:hunter2-pass@broker:5672/")
    log.info("call", extra={"authorization": "Bearer opaque-secret-value", "headers": {"Cookie": "sid=abc123"},
                            "client_secret": "s3cr3t-value", "detail": f"token={JWT}", "to": "ana@example.org"})
    structlog.get_logger("clinic.structured").info("issued", access_token="opaque-token-value",
                                                   password="pa55word", note=[JWT])
    text = json.dumps(lines())
    for secret in (SIGNATURE, "opaque-secret-value", "sid=abc123", "s3cr3t-value", "hunter2-pass",
                   "ana@example.org", "opaque-token-value", "pa55word"):
        assert secret not in text
    message, args, fields, structured = lines()
    assert message["event"] == "verifying [redacted-jwt]"
    assert args["event"] == "Authorization: Bearer [redacted-jwt], via amqp://clinic:[redacted]@broker:5672/"
    assert (fields["authorization"], fields["headers"], fields["client_secret"], fields["detail"]) == (
        "[redacted]", {"Cookie": "[redacted]"}, "[redacted]", "token=[redacted-jwt]")
    assert (structured["access_token"], structured["password"], structured["note"]) == (
        "[redacted]", "[redacted]", ["[redacted-jwt]"])


def test_an_exception_is_rendered_as_text_and_redacted_too(lines):
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        logging.getLogger("clinic.test").exception("verification failed")
        structlog.get_logger("clinic.structured").exception("again")
    for line in lines():
        assert line["level"] == "error"
        assert line["exc_info"].startswith("Traceback (most recent call last):")
        assert "ValueError: bad token [redacted-jwt]" in line["exc_info"]
        assert SIGNATURE not in line["exc_info"]


def test_uvicorn_access_records_become_fields_without_the_client_address_or_a_code(lines):
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "203.0.113.9:5123", "GET",
                                             "/oauth/authorize?client_id=web&code=abc123", "1.1", 302)
    [line] = lines()
    assert (line["http_method"], line["path"], line["status"]) == (
        "GET", "/oauth/authorize?client_id=web&code=[redacted]", 302)
    assert "203.0.113.9" not in json.dumps(line) and "abc123" not in json.dumps(line)


def test_configuring_again_replaces_the_handler_and_warnings_are_logged(lines):
    configure_logging("booking", "INFO", stream=lines.buffer)
    logging.getLogger("clinic.test").debug("below the level now")
    logging.getLogger("clinic.test").info("once")
    import warnings

    warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    events = [line["event"] for line in lines()]
    assert events[0] == "once" and len(events) == 2
    assert "deprecated thing" in events[1]


def test_the_console_format_is_for_people():
    buffer = io.StringIO()
    root, before = logging.getLogger(), list(logging.getLogger().handlers)
    try:
        configure_logging("serve", "INFO", json=False, stream=buffer)
        logging.getLogger("clinic.test").info("hello %s", JWT)
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        structlog.reset_defaults()
    assert "hello [redacted-jwt]" in buffer.getvalue() and not buffer.getvalue().startswith("{")


def test_a_message_names_its_correlation_saga_and_causing_event():
    properties = Basic.Properties(message_id="Booking:4", correlation_id="corr-9", headers={
        "originator_id": b"0b6a", "originator_version": 3, "saga_id": "saga-1"})
    assert message_ids(properties) == {"correlation_id": "corr-9", "causation_id": "0b6a@3", "saga_id": "saga-1",
                                       "message_id": "Booking:4"}
    bare = Basic.Properties(message_id="x", headers={"correlation_id": "corr-h"})
    assert message_ids(bare)["correlation_id"] == "corr-h" and message_ids(bare)["causation_id"] is None


def test_log_settings_are_checked():
    assert (Settings.from_env({}).log_level, Settings.from_env({}).log_format) == ("INFO", "json")
    assert Settings.from_env({"CLINIC_LOG_LEVEL": "debug", "CLINIC_LOG_FORMAT": "Console"}).log_format == "console"
    with pytest.raises(SettingsError, match="CLINIC_LOG_LEVEL"):
        Settings.from_env({"CLINIC_LOG_LEVEL": "chatty"})
    with pytest.raises(SettingsError, match="CLINIC_LOG_FORMAT"):
        Settings.from_env({"CLINIC_LOG_FORMAT": "xml"})
