"""An OTLP/HTTP traces receiver in this process: what a collector would get from the services.

Each service exports with the real OTLP/HTTP exporter (protobuf over HTTP POST to
``/v1/traces``); this server decodes each ``ExportTraceServiceRequest`` (opentelemetry-proto) and
keeps every span with the ``service.name`` of the resource it came from.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, as a collector sees it."""

    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    start_ns: int = 0
    """When the span started and ended (Unix nanoseconds): where a booking's time went."""
    end_ns: int = 0


class OtlpReceiver:
    """Listens on 127.0.0.1 (a free port) until ``stop``; ``spans`` grows as services export."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def endpoint(self) -> str:
        """The base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter adds ``/v1/traces``)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        """Every span received so far of ``trace_id``."""
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def received(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def add(self, request: ExportTraceServiceRequest) -> None:
        received = [span for resource_spans in request.resource_spans for span in _spans(resource_spans)]
        with self._lock:
            self.spans.extend(received)


def _spans(resource_spans: Any) -> list[ReceivedSpan]:
    service = str(_attributes(resource_spans.resource.attributes).get("service.name"))
    return [ReceivedSpan(service, span.name, KINDS.get(span.kind, str(span.kind)), span.trace_id.hex(),
                         span.span_id.hex(), span.parent_span_id.hex(), _attributes(span.attributes),
                         span.start_time_unix_nano, span.end_time_unix_nano)
            for scope_spans in resource_spans.scope_spans for span in scope_spans.spans]


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


def _handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            receiver.add(ExportTraceServiceRequest.FromString(body))
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:  # quiet: the services' own logs say what happened
            pass

    return Handler
