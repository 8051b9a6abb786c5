"""Keeps projections up with their leaders' notification logs, one batch and position at a time.

For each leader, one read and one decode serve every projection of that leader; each projection
then applies its ops for the batch together with its new position, in one atomic store call that
names the position the batch was read after, so a crash, a retry or a second runner never applies
an event twice. Events a projection ignores still move its position. While catching up, a store
that can defer replies (Redis) runs one batch while the next is read and decoded.

An event a projection raises on (or that cannot be decoded) is quarantined, not fatal: its entry
(``projections/quarantine.py``) is written with the batch, in place of the event's ops, and the
projection moves on; ``clinic projections errors|retry|skip`` deal with it.

Each projection is written into the version readers use, its serving version, read again at every
``catch_up`` and ``step`` and whenever the store refuses a batch: when a rebuild switches it, the
store refuses the next batch for the retired version and the runner follows the new one. A runner
that finds no serving version makes its code version serving. A rebuild's runner is instead pinned
to the version it builds (``versions``), and stops if that version is retired under it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError

from projections.base import Projection
from projections.ops import Op
from projections.quarantine import quarantined
from projections.spans import batch_spans
from projections.store import ViewStore

log = logging.getLogger(__name__)
DEFAULT_BATCH_SIZE = 1000
OUTAGES = (OperationalError, InterfaceError)
"""Errors of a store, not of an event: never quarantined."""
Send = Callable[..., Callable[[], bool]]
"""Takes ``ViewStore.apply``'s arguments; returns a reader of whether the batch was accepted."""
Positions = dict[tuple[str, int, str], int]


class VersionRetiredError(RuntimeError):
    """A runner pinned to a version found a newer one serving: its batches would all be refused."""


@dataclass(frozen=True)
class LeaderStatus:
    """How far a projection has read one leader's log."""

    position: int
    head: int

    @property
    def lag(self) -> int:
        """Notifications recorded but not yet applied."""
        return max(self.head - self.position, 0)


@dataclass(frozen=True)
class ProjectionStatus:
    """A projection version and its position in each of its leaders' logs."""

    name: str
    version: int
    leaders: dict[str, LeaderStatus] = field(default_factory=dict)

    @property
    def lag(self) -> int:
        """Notifications not yet applied, over all its leaders."""
        return sum(leader.lag for leader in self.leaders.values())


class ProjectionRunner:
    """Reads leaders' logs in batches and applies each projection's ops with its position atomically."""

    def __init__(self, apps_by_name: Mapping[str, Any], store: ViewStore, projections: Iterable[Projection],
                 batch_size: int = DEFAULT_BATCH_SIZE, versions: Mapping[str, int] | None = None) -> None:
        self.apps = apps_by_name
        self.store = store
        self.projections = tuple(projections)
        self.batch_size = batch_size
        self.pinned = dict(versions or {})
        """Projection name → the version to write, instead of the serving one (a rebuild's target)."""
        self.last_error: BaseException | None = None
        self._lock = threading.Lock()
        self._versions: dict[str, int] = {}
        self._by_leader: dict[str, list[Projection]] = {}
        for projection in self.projections:
            for leader in projection.leaders:
                if leader not in self.apps:
                    raise ValueError(f"projection {projection.name} reads {leader}, which is not given")
                self._by_leader.setdefault(leader, []).append(projection)

    def catch_up(self, max_batches: int | None = None, on_round: Callable[[int], object] | None = None) -> int:
        """Process batches (at most ``max_batches`` per leader) until every projection is at its
        leaders' heads; returns how many notifications were read. ``on_round`` is called with the
        number read after each round that read some (it may raise to stop: positions stay consistent)."""
        total, rounds = 0, 0
        with self._lock, _sender(self.store) as send:
            positions = self._stored_positions()
            in_flight: list[Callable[[], bool]] = []
            while max_batches is None or rounds < max_batches:
                sent, read = self._send_round(send, positions)  # sent before the last round's replies are read
                accepted, in_flight = _accepted(in_flight), sent
                if not accepted:  # another writer moved a position, or the version was retired: re-read
                    _accepted(in_flight)
                    in_flight, positions = [], self._stored_positions()
                    continue
                if read == 0:
                    break
                total, rounds = total + read, rounds + 1
                if on_round is not None:
                    on_round(read)
            _accepted(in_flight)
        return total

    def step(self) -> int:
        """Process at most one batch from each leader; returns how many notifications were read."""
        with self._lock:
            sent, read = self._send_round(_applying_now(self.store), self._stored_positions())
            _accepted(sent)
            return read

    def status(self) -> dict[str, ProjectionStatus]:
        """Each projection's position (in the version it writes), its leaders' heads and its lag, by name."""
        heads = {leader: self.apps[leader].recorder.max_notification_id() or 0 for leader in self._by_leader}
        versions = self._resolve_versions()
        return {p.name: ProjectionStatus(p.name, versions[p.name], {
            leader: LeaderStatus(self.store.position(p.name, versions[p.name], leader), heads[leader])
            for leader in p.leaders}) for p in self.projections}

    def version_of(self, projection: Projection) -> int:
        """The version this runner writes ``projection`` into: pinned, else serving, else its code version."""
        if projection.name in self.pinned:
            return self.pinned[projection.name]
        return self.store.serving_version(projection.name) or projection.version

    def _resolve_versions(self) -> dict[str, int]:
        return {p.name: self.version_of(p) for p in self.projections}

    def _stored_positions(self) -> Positions:
        """Re-read the versions to write, and their positions."""
        self._versions = {p.name: self._follow(p) for p in self.projections}
        return {(p.name, self._versions[p.name], leader): self.store.position(p.name, self._versions[p.name], leader)
                for leader, projections in self._by_leader.items() for p in projections}

    def _follow(self, projection: Projection) -> int:
        """``version_of``, checked: a pinned version must not be retired; an unset serving version is
        made the code version (which readers use then), so that a later bump of the code version does
        not switch readers to a version not built yet."""
        serving = self.store.serving_version(projection.name)
        if projection.name in self.pinned:
            if serving is not None and serving > self.pinned[projection.name]:
                raise VersionRetiredError(f"{projection.name} v{self.pinned[projection.name]} was retired while "
                                          f"being written (serving is v{serving})")
            return self.pinned[projection.name]
        if serving is None:
            serving = projection.version
            self.store.set_serving_version(projection.name, serving)
        return serving

    def _send_round(self, send: Send, positions: Positions) -> tuple[list[Callable[[], bool]], int]:
        """One batch from each leader, sent for every projection behind it; ``positions`` move on."""
        sent, read = [], 0
        for leader, projections in self._by_leader.items():
            keys = [(p.name, self._versions[p.name], leader) for p in projections]
            notifications, batches, traces = self._read(leader, projections, [positions[key] for key in keys])
            if not notifications:
                continue
            read, last_id = read + len(notifications), notifications[-1].id
            for projection, key, ops in zip(projections, keys, batches, strict=True):
                if positions[key] < last_id:
                    applied = [t for n, t in zip(notifications, traces, strict=True) if n.id > positions[key]]
                    with batch_spans().batch(self.store, projection.name, len(ops), applied):  # in the events' trace
                        sent.append(send(projection.name, key[1], leader, last_id, ops, positions[key]))
                    positions[key] = last_id
        return sent, read

    def _read(self, leader: str, projections: Sequence[Projection],
              positions: list[int]) -> tuple[Sequence[Any], list[list[Op]], list[str | None]]:
        """The next batch of notifications after the lowest position, each projection's ops for
        those after its own position (each event decoded once, and dropped once every projection used it),
        and each notification's stored ``traceparent``."""
        app = self.apps[leader]
        notifications = app.recorder.select_notifications(
            start=min(positions), limit=self.batch_size, inclusive_of_start=False)
        batches: list[list[Op]] = [[] for _ in projections]
        uses = [(p.changes, position, ops) for p, position, ops in zip(projections, positions, batches, strict=True)]
        traces: list[str | None] = []
        debugging = log.isEnabledFor(logging.DEBUG)  # a line per event only at DEBUG: counters otherwise
        for notification in notifications:
            try:
                event = app.mapper.to_domain_event(notification)
            except OUTAGES:
                raise  # the key store is out: the batch is read again, nothing is quarantined
            except Exception as error:  # noqa: BLE001 - an undecodable event: quarantined by each projection
                traces.append(None)
                for (_, position, ops), projection in zip(uses, projections, strict=True):
                    if notification.id > position:
                        ops.append(quarantined(projection.name, leader, notification, error))
                continue
            traces.append(getattr(event, "traceparent", None))
            if debugging:
                _log_event(leader, notification, event)
            for (changes, position, ops), projection in zip(uses, projections, strict=True):
                if notification.id > position:
                    ops.extend(_changes_or_quarantined(changes, event, projection.name, leader, notification))
        return notifications, batches, traces


def _changes_or_quarantined(changes: Callable[[Any], list[Op]], event: Any, name: str, leader: str,
                            notification: Any) -> list[Op]:
    """The projection's ops for ``event``; if it raises on it, the quarantine entry instead (projections are
    pure: whatever one raises on an event, it would raise again)."""
    try:
        return changes(event)
    except Exception as error:  # noqa: BLE001 - a poison event for this projection: recorded, not fatal
        return [quarantined(name, leader, notification, error)]


def _log_event(leader: str, notification: Any, event: Any) -> None:
    """The event's line (read outside its trace): its correlation and saga ids, itself as the cause of what the
    projections do, and its stored ``traceparent`` (the line carries the trace and span it was recorded in)."""
    ids = {"correlation_id": getattr(event, "correlation_id", None), "saga_id": getattr(event, "saga_id", None),
           "causation_id": f"{notification.originator_id}@{notification.originator_version}",
           "traceparent": getattr(event, "traceparent", None)}
    log.debug("read %s notification %d (%s)", leader, notification.id, notification.topic,
              extra={key: value for key, value in ids.items() if value is not None})


def _accepted(replies: Sequence[Callable[[], bool]]) -> bool:
    """Read every reply, in order; whether all the batches were accepted."""
    return all([reply() for reply in replies])  # noqa: C419 - a list, so every reply is read


def _applying_now(store: ViewStore) -> Send:
    def send(*args: Any) -> Callable[[], bool]:
        accepted = store.apply(*args)
        return lambda: accepted
    return send


def _sender(store: ViewStore) -> AbstractContextManager[Send]:
    deferred = getattr(store, "deferred", None)
    return deferred() if deferred is not None else nullcontext(_applying_now(store))
