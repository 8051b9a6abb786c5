"""This process's log lines, configured as a service configures them, into a buffer a test reads."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
from collections.abc import Iterator

import structlog

from infrastructure.observability.logging import configure_logging


@contextlib.contextmanager
def captured_logs(service: str, level: str = "DEBUG") -> Iterator[io.StringIO]:
    """``configure_logging(service, level)`` writing into the yielded buffer; the root logger, structlog and
    the exception hooks as they were afterwards."""
    root, hooks = logging.getLogger(), (sys.excepthook, threading.excepthook)
    before_level, before = root.level, list(root.handlers)
    buffer = io.StringIO()
    configure_logging(service, level, stream=buffer)
    try:
        yield buffer
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        root.setLevel(before_level)
        logging.captureWarnings(False)
        structlog.reset_defaults()
        sys.excepthook, threading.excepthook = hooks
