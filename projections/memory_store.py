"""The in-process view store (embedded mode without Redis): same semantics as the Redis one."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from projections.ops import (
    AddToIndex,
    AppendToList,
    CopyToMembers,
    Op,
    RemoveFromIndex,
    RemoveFromList,
    SetFields,
    SetFieldsIf,
)
from projections.store import INF, ChangeWatcher, RebuildTarget, ServingRead, ViewChange


class _Hash(dict):
    """A hash: field → value."""


class _ZSet(dict):
    """A sorted set: member → score."""


class _List(list):
    """A list of strings."""


KIND_OF_OP: dict[type, type] = {
    SetFields: _Hash, SetFieldsIf: _Hash, AddToIndex: _ZSet, RemoveFromIndex: _ZSet, AppendToList: _List,
    RemoveFromList: _List, CopyToMembers: _ZSet,
}


class MemoryViewStore:
    """A ``ViewStore`` in dictionaries behind one lock; a batch is checked whole before any change."""

    db_system = "memory"
    """Names the runner's batch spans (``memory.apply_batch``)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._views: dict[tuple[str, int], dict[str, Any]] = {}
        self._positions: dict[tuple[str, int, str], int] = {}
        self._serving: dict[str, int] = {}
        self._rebuilds: dict[str, RebuildTarget] = {}
        self._watchers: list[ChangeWatcher] = []

    def apply(self, name: str, version: int, leader: str, last_notification_id: int, ops: Sequence[Op],
              expected_position: int | None = None) -> bool:
        """Apply ``ops`` and move the position, or refuse (see ``ViewStore.apply``)."""
        with self._lock:
            stored = self._positions.get((name, version, leader), 0)
            if stored >= last_notification_id or expected_position not in (None, stored):
                return False
            if version < self._serving.get(name, 0):  # retired by a rebuild
                return False
            view = self._views.setdefault((name, version), {})
            _check_kinds(view, ops)
            for op in ops:
                _apply_op(view, op)
            self._positions[(name, version, leader)] = last_notification_id
            watchers = list(self._watchers)
            change = ViewChange(name, version, leader, last_notification_id, _touched(view, ops)) if watchers else None
        for watcher in watchers:
            watcher.changed(change)  # type: ignore[arg-type]
        return True

    def watch(self, watcher: ChangeWatcher) -> Callable[[], None]:
        """Tell ``watcher`` of every batch applied from now on (in the applying thread); live at once."""
        with self._lock:
            self._watchers.append(watcher)
        watcher.reset()

        def stop() -> None:
            with self._lock:
                if watcher in self._watchers:
                    self._watchers.remove(watcher)

        return stop

    def position(self, name: str, version: int, leader: str) -> int:
        """The last notification id of ``leader`` applied (0: none)."""
        with self._lock:
            return self._positions.get((name, version, leader), 0)

    def get_fields(self, name: str, version: int, key: str) -> dict[str, str]:
        """The hash at ``key`` (``{}`` if absent)."""
        with self._lock:
            return dict(self._get(name, version, key, _Hash))

    def read_serving(self, name: str, default_version: int, key: str, leaders: Sequence[str]) -> ServingRead:
        """The serving version's hash at ``key`` and its positions for ``leaders``, under one lock."""
        with self._lock:
            version = self._serving.get(name) or default_version
            return ServingRead(version, dict(self._get(name, version, key, _Hash)),
                               {leader: self._positions.get((name, version, leader), 0) for leader in leaders})

    def get_many_fields(self, name: str, version: int, keys: Sequence[str]) -> list[dict[str, str]]:
        """The hashes at ``keys``, in order."""
        with self._lock:
            return [dict(self._get(name, version, key, _Hash)) for key in keys]

    def range_by_score(self, name: str, version: int, key: str, min: float = -INF, max: float = INF,  # noqa: A002
                       reverse: bool = False, offset: int = 0, count: int | None = None) -> list[tuple[str, float]]:
        """Members scored within [min, max], ordered by (score, member) like Redis."""
        with self._lock:
            items = sorted(self._get(name, version, key, _ZSet).items(), key=lambda i: (i[1], i[0]), reverse=reverse)
        chosen = [(member, score) for member, score in items if min <= score <= max][offset:]
        return chosen if count is None or count < 0 else chosen[:count]

    def list_items(self, name: str, version: int, key: str, start: int = 0, stop: int = -1) -> list[str]:
        """Items ``start``..``stop`` inclusive, negative indices from the end (like LRANGE)."""
        with self._lock:
            items = list(self._get(name, version, key, _List))
        size = len(items)
        start, stop = max(start + size if start < 0 else start, 0), stop + size if stop < 0 else stop
        return items[start:stop + 1] if stop >= start else []

    def serving_version(self, name: str) -> int | None:
        """The version readers of ``name`` use."""
        with self._lock:
            return self._serving.get(name)

    def set_serving_version(self, name: str, version: int) -> None:
        """Switch readers of ``name`` to ``version``."""
        with self._lock:
            self._serving[name] = version
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher.reset()

    def rebuild_target(self, name: str) -> RebuildTarget | None:
        """The rebuild of ``name`` in progress (``None``: none)."""
        with self._lock:
            return self._rebuilds.get(name)

    def set_rebuild_target(self, name: str, target: RebuildTarget | None) -> None:
        """Record the rebuild of ``name`` in progress (``None``: forget it)."""
        with self._lock:
            if target is None:
                self._rebuilds.pop(name, None)
            else:
                self._rebuilds[name] = target

    def delete_version(self, name: str, version: int) -> int:
        """Forget this version's views and positions; returns how many keys went."""
        with self._lock:
            removed = len(self._views.pop((name, version), {}))
            positions = [k for k in self._positions if k[:2] == (name, version)]
            for k in positions:
                del self._positions[k]
            return removed + len(positions)

    def dump(self, name: str, version: int) -> dict[str, Any]:
        """Every view key of this version and its value (see ``ViewStore.dump``)."""
        with self._lock:
            return {key: _plain(value) for key, value in self._views.get((name, version), {}).items()}

    def _get(self, name: str, version: int, key: str, kind: type) -> Any:
        value = self._views.get((name, version), {}).get(key)
        if value is None:
            return kind()
        if not isinstance(value, kind):
            raise TypeError(f"WRONGTYPE {key} holds a {type(value).__name__.strip('_').lower()}")
        return value


def _touched(view: dict[str, Any], ops: Sequence[Op]) -> tuple[str, ...]:
    """The view keys ``ops`` wrote, once each; a copy onto an index's members wrote each member's hash
    (when its source had fields)."""
    keys: dict[str, None] = {}
    for op in ops:
        if not isinstance(op, CopyToMembers):
            keys[op.key] = None
        elif view.get(op.source):
            keys.update((op.prefix + member, None) for member in view.get(op.index, {}))
    return tuple(keys)


def _check_kinds(view: dict[str, Any], ops: Sequence[Op]) -> None:
    """Refuse the whole batch before any change if one op does not fit its key's type."""
    planned: dict[str, type] = {}
    for op in ops:
        kind = KIND_OF_OP.get(type(op))
        if kind is None:
            raise TypeError(f"not a view op: {op!r}")
        _plan(view, planned, op.index if isinstance(op, CopyToMembers) else op.key, kind)
        if isinstance(op, CopyToMembers):
            _plan(view, planned, op.source, _Hash)
            index = view.get(op.index)
            for member in index if isinstance(index, _ZSet) else ():
                _plan(view, planned, op.prefix + member, _Hash)
        if isinstance(op, AddToIndex) and op.score != op.score:
            raise ValueError(f"NaN score for {op.member!r} in {op.key!r}")


def _plan(view: dict[str, Any], planned: dict[str, type], key: str, kind: type) -> None:
    existing = planned.get(key) or (type(view[key]) if key in view else kind)
    if existing is not kind:
        raise TypeError(f"WRONGTYPE {key} holds a {existing.__name__.strip('_').lower()}")
    planned[key] = kind


def _apply_op(view: dict[str, Any], op: Op) -> None:
    if isinstance(op, SetFields):
        view.setdefault(op.key, _Hash()).update({f: str(v) for f, v in op.fields.items()})
    elif isinstance(op, AddToIndex):
        view.setdefault(op.key, _ZSet())[op.member] = float(op.score)
    elif isinstance(op, RemoveFromIndex):
        index = view.get(op.key, {})
        index.pop(op.member, None)
        if not index:
            view.pop(op.key, None)
    elif isinstance(op, AppendToList):
        view.setdefault(op.key, _List()).append(op.value)
    elif isinstance(op, RemoveFromList):
        kept = _List(item for item in view.get(op.key, ()) if item != op.value)
        if kept:
            view[op.key] = kept
        else:
            view.pop(op.key, None)
    elif isinstance(op, CopyToMembers):
        fields = dict(view.get(op.source, {}))
        for member in view.get(op.index, {}) if fields else ():
            view.setdefault(op.prefix + member, _Hash()).update(fields)
    elif view.get(op.key, {}).get(op.field) == op.equals:
        view[op.key].update({f: str(v) for f, v in op.fields.items()})


def _plain(value: Any) -> Any:
    if isinstance(value, _ZSet):
        return sorted(value.items(), key=lambda item: (item[1], item[0]))
    return list(value) if isinstance(value, _List) else dict(value)
