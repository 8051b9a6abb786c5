"""The auth directory's JSON files: written atomically and owner-only, re-read when they change.

Each file is replaced whole (write a temporary file, then ``os.replace``), so a reader sees
the old content or the new, never half of it. A change is noticed by the file's
``(inode, mtime, size)``: one ``stat`` per request, no re-read while nothing changed.
A Kubernetes Secret mounted as a volume is swapped the same way (a symlink flip), so it is
noticed too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


def write_private_json(path: Path, document: object) -> None:
    """Replace ``path`` with ``document`` as JSON, readable and writable by its owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(document, file, indent=2, sort_keys=True)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def read_json(path: Path, default: object) -> object:
    """The JSON document in ``path``, or ``default`` when there is no such file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error.msg}, line {error.lineno})") from None


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an advisory lock next to ``path`` (two ``clinic keys rotate`` cannot interleave)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class Watched(Generic[T]):
    """The value parsed from a file, parsed again only when the file has changed."""

    def __init__(self, path: Path, parse: Callable[[Path], T]) -> None:
        self.path = path
        self.parse = parse
        self._signature: tuple[int, int, int] | None = None
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        """The current value (a ``stat`` per call; a re-read only after a change)."""
        with self._lock:
            signature = _signature(self.path)
            if self._value is None or signature != self._signature:
                self._value = self.parse(self.path)
                self._signature = signature
            return self._value


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size
