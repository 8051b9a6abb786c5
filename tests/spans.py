"""Spans for tests: this process's tracer provider, installed for one test and removed after.

OpenTelemetry lets a process set its global provider once; the tests reset that global after
each use (as OpenTelemetry's own test utilities do: ``opentelemetry.test.globals_test``), so
spans never leak into other tests and every other test runs with the no-op API, as production
does when tracing is not configured. The provider is the one the composition root builds
(``build_tracer_provider``), exporting to memory instead of OTLP.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from application.settings import Settings
from infrastructure.observability.tracing import OpenTelemetrySpans, build_tracer_provider
from process_managers.spans import install_spans
from projections.spans import install_batch_spans


@dataclass
class Spans:
    """The installed provider and what it has exported so far."""

    provider: TracerProvider
    exporter: InMemorySpanExporter

    def finished(self) -> list[ReadableSpan]:
        """Every span ended so far (the batch processor flushed first)."""
        self.provider.force_flush()
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.name == name]


@contextmanager
def installed_spans(service: str = "test") -> Iterator[Spans]:
    """A provider kept in memory, global for the block, with the process managers' and projections' spans over
    it, as ``configure_tracing`` installs them (then the no-op API and no spans again)."""
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider(service, Settings(), exporter=exporter)
    assert provider is not None
    _set_global(provider)
    install_spans(OpenTelemetrySpans())
    install_batch_spans(OpenTelemetrySpans())
    try:
        yield Spans(provider, exporter)
    finally:
        provider.shutdown()
        install_spans(None)
        install_batch_spans(None)
        _set_global(None)


def _set_global(provider: TracerProvider | None) -> None:
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # noqa: SLF001 - the one documented way tests reset it
    trace._TRACER_PROVIDER = None  # noqa: SLF001
    if provider is not None:
        trace.set_tracer_provider(provider)
