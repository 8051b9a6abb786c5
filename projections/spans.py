"""The span of one projection batch write: a port.

``batch_spans()`` is the implementation the composition root installed (``install_batch_spans``;
OpenTelemetry's is ``infrastructure.observability.tracing.OpenTelemetrySpans``, which writes a
batch of one trace in that trace and links a batch serving several to each); until then
``NoBatchSpans`` opens none.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol


class BatchSpans(Protocol):
    def batch(self, store: Any, projection: str, ops: int, traceparents: Sequence[Any]) -> AbstractContextManager[None]:
        """Writing ``ops`` of ``projection`` (and its position) to ``store``, for events stored in ``traceparents``."""


class NoBatchSpans:
    @contextmanager
    def batch(self, store: Any, projection: str, ops: int, traceparents: Sequence[Any]) -> Iterator[None]:
        yield


_installed: list[BatchSpans] = [NoBatchSpans()]


def batch_spans() -> BatchSpans:
    """The installed implementation (``NoBatchSpans`` until the composition root installs another)."""
    return _installed[0]


def install_batch_spans(implementation: BatchSpans | None) -> None:
    """Make ``implementation`` the process's batch spans (``None``: none again)."""
    _installed[0] = implementation if implementation is not None else NoBatchSpans()
