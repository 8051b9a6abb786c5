"""Where projections' views live: one interface, an in-process and a Redis implementation.

Every view key is namespaced by projection name and version, so a new version is built beside the
one being served (blue-green) and ``serving_version`` says which one readers use. A rebuild in
progress leaves a ``RebuildTarget`` marker, so an interrupted one resumes into the same version.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from projections.ops import Op

INF = float("inf")


@dataclass(frozen=True)
class RebuildTarget:
    """A rebuild in progress: the version being built, and the projection code version building it."""

    version: int
    code_version: int


@dataclass(frozen=True)
class ViewChange:
    """One batch applied: the projection version, its leader and new position there, and the view keys
    the batch wrote."""

    name: str
    version: int
    leader: str
    position: int
    keys: tuple[str, ...]


class ChangeWatcher(Protocol):
    """Told of the changes a store makes (``ViewStore.watch``), from whichever thread learns of them."""

    def changed(self, change: ViewChange) -> None:
        """A batch was applied."""
        ...

    def reset(self) -> None:
        """Anything may have changed (a serving version switched, or the feed was (re)connected)."""
        ...

    def lost(self) -> None:
        """The feed is down: changes are not being told until the next ``reset``."""
        ...


@dataclass(frozen=True)
class ServingRead:
    """One hash of the serving version of a projection, with that version's positions, read together."""

    version: int
    fields: dict[str, str]
    positions: dict[str, int]
    """Leader name → the last notification id of it applied to ``version`` (0: none)."""


class ViewStore(Protocol):
    """Applies projections' ops with their tracking position atomically; answers the queries."""

    def apply(self, name: str, version: int, leader: str, last_notification_id: int, ops: Sequence[Op],
              expected_position: int | None = None) -> bool:
        """Apply ``ops`` and set the position for ``leader`` to ``last_notification_id``, all or nothing.

        Refused (``False``, nothing changed) when the stored position is already ≥
        ``last_notification_id``, or, if ``expected_position`` is given, differs from it (another
        writer moved it since the batch was read: re-read rather than append twice), or when
        ``version`` is older than the serving version (retired by a rebuild: a runner that has not
        seen the switch yet cannot write into keys being deleted).
        """
        ...

    def position(self, name: str, version: int, leader: str) -> int:
        """The last notification id of ``leader`` applied to this projection version (0: none)."""
        ...

    def get_fields(self, name: str, version: int, key: str) -> dict[str, str]:
        """The hash at ``key`` (``{}`` if absent)."""
        ...

    def read_serving(self, name: str, default_version: int, key: str, leaders: Sequence[str]) -> ServingRead:
        """The hash at ``key`` in the serving version of ``name`` (``default_version`` if none is set)
        and that version's positions for ``leaders``, as one consistent read (one round trip in Redis)."""
        ...

    def get_many_fields(self, name: str, version: int, keys: Sequence[str]) -> list[dict[str, str]]:
        """The hashes at ``keys``, in order, in one round trip (``{}`` for absent ones)."""
        ...

    def range_by_score(self, name: str, version: int, key: str, min: float = -INF, max: float = INF,  # noqa: A002
                       reverse: bool = False, offset: int = 0, count: int | None = None) -> list[tuple[str, float]]:
        """Members of the sorted set at ``key`` scored within [min, max], ascending (or descending)."""
        ...

    def list_items(self, name: str, version: int, key: str, start: int = 0, stop: int = -1) -> list[str]:
        """Items ``start``..``stop`` (inclusive, negative from the end) of the list at ``key``."""
        ...

    def serving_version(self, name: str) -> int | None:
        """The version of projection ``name`` readers should use (``None``: never set)."""
        ...

    def set_serving_version(self, name: str, version: int) -> None:
        """Switch readers of ``name`` to ``version`` in one step."""
        ...

    def rebuild_target(self, name: str) -> RebuildTarget | None:
        """The rebuild of ``name`` in progress (``None``: none)."""
        ...

    def set_rebuild_target(self, name: str, target: RebuildTarget | None) -> None:
        """Record the rebuild of ``name`` in progress (``None``: forget it)."""
        ...

    def delete_version(self, name: str, version: int) -> int:
        """Delete every key of this projection version, positions included; returns how many."""
        ...

    def watch(self, watcher: ChangeWatcher) -> Callable[[], None]:
        """Tell ``watcher`` of every batch applied from now on, by any writer (``reset`` first, once the
        feed is live); returns the function that stops telling it."""
        ...

    def dump(self, name: str, version: int) -> dict[str, Any]:
        """Every view key of this version (positions excluded) and its value, for checks and tests.

        Hashes as ``dict``, sorted sets as a list of ``(member, score)`` in order, lists as ``list``.
        """
        ...
