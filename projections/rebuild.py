"""Blue-green rebuild of one projection: build a new version beside the serving one, then switch.

The new version is built from the start of its leaders' logs by a ``ProjectionRunner`` pinned to it,
while the live runner keeps the serving version up. Once it has caught up to the heads, one
``set_serving_version`` switches readers to it; the live runner follows the switch within one batch
(it re-reads the serving version every round, and the store refuses batches for older versions);
after a grace period for readers that looked the version up just before the switch, the old
version's keys are deleted.

Resuming: the target is recorded (``ViewStore.set_rebuild_target``) before anything is built, and
positions are kept per version, so a rebuild that stopped (Ctrl-C, a crash, a progress callback
that raised) continues from the target's positions when run again, into the same version, as long
as the projection's code version is the one that started it. One rebuild of a projection at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from projections.base import Projection
from projections.runner import DEFAULT_BATCH_SIZE, ProjectionRunner, VersionRetiredError
from projections.store import RebuildTarget, ViewStore

RETIRE_GRACE_SECONDS = 2.0
"""How long the old version stays after the switch, for reads that looked the version up just before."""
VERIFY_ATTEMPTS = 10
"""Catch-ups tried for the target to be at every head at one moment (events keep arriving)."""


class RebuildError(RuntimeError):
    """The new version could not be brought up to the heads; nothing was switched."""


@dataclass(frozen=True)
class Progress:
    """How far a rebuild is: notifications applied to the new version out of the leaders' heads."""

    name: str
    version: int
    done: int
    total: int
    events_per_second: float
    """Over this run (a resumed rebuild counts only what it read itself)."""
    eta_seconds: float | None
    """Until ``done`` reaches ``total`` at this rate (``None``: no rate yet)."""


@dataclass(frozen=True)
class ViewDiff:
    """The serving version checked against a rebuilt one: view keys, positions excluded."""

    differing: list[str]
    """In both, with different values."""
    missing: list[str]
    """In the rebuilt version, not in the serving one."""
    extra: list[str]
    """In the serving version, not in the rebuilt one."""

    @property
    def same(self) -> bool:
        """Whether the two versions hold the same views."""
        return not (self.differing or self.missing or self.extra)


@dataclass(frozen=True)
class RebuildResult:
    """What a rebuild did."""

    name: str
    serving_before: int
    target: int
    resumed: bool
    """Whether it continued a rebuild into ``target`` that had stopped (or a dry run's build)."""
    events: int
    """Notifications read by this run."""
    seconds: float
    """Building and verifying the target (not the grace period and the deletion after the switch)."""
    switched: bool
    deleted_keys: int
    """Keys of ``serving_before`` deleted after the switch."""
    diff: ViewDiff | None = None
    """Dry run only: the serving version against the rebuilt one."""


def rebuild(apps: Mapping[str, Any], store: ViewStore, projection: Projection, *,
            batch_size: int = DEFAULT_BATCH_SIZE, dry_run: bool = False,
            on_progress: Callable[[Progress], object] | None = None,
            retire_grace: float = RETIRE_GRACE_SECONDS) -> RebuildResult:
    """Build ``projection`` into a new version and switch readers to it, then delete the old version.

    ``dry_run``: build (or finish building) the new version and compare it with the serving one,
    switching and deleting nothing; a later rebuild continues into the version it built.
    ``on_progress`` is called after every batch round; if it raises, the rebuild stops there and
    the next one resumes. ``apps``: the applications by name (at least the projection's leaders).
    """
    began = time.monotonic()
    serving = store.serving_version(projection.name) or projection.version
    target, resumed = choose_target(store, projection, serving)
    runner = ProjectionRunner(apps, store, [projection], batch_size, versions={projection.name: target})
    meter = _Meter(runner, projection.name, on_progress)
    events = _catch_up_to_heads(runner, projection.name, meter)
    seconds = time.monotonic() - began
    if dry_run:
        diff = compare(store.dump(projection.name, serving), store.dump(projection.name, target))
        return RebuildResult(projection.name, serving, target, resumed, events, seconds, False, 0, diff)
    store.set_serving_version(projection.name, target)  # the switch: readers use the new version from here
    store.set_rebuild_target(projection.name, None)
    time.sleep(retire_grace)
    deleted = store.delete_version(projection.name, serving)
    return RebuildResult(projection.name, serving, target, resumed, events, seconds, True, deleted)


def choose_target(store: ViewStore, projection: Projection, serving: int) -> tuple[int, bool]:
    """The version to build and whether a rebuild into it is resumed; records it as in progress.

    A recorded target newer than ``serving`` and started by this code version is resumed. Otherwise
    the target is the code version if it is newer than ``serving`` (a bumped projection), else
    ``serving + 1``; whatever an abandoned build left there is deleted first (never ``serving``).
    """
    recorded = store.rebuild_target(projection.name)
    if recorded is not None and recorded.version > serving and recorded.code_version == projection.version:
        return recorded.version, True
    if recorded is not None and recorded.version != serving:
        store.delete_version(projection.name, recorded.version)  # built by other code, or retired
    target = projection.version if projection.version > serving else serving + 1
    store.delete_version(projection.name, target)
    store.set_rebuild_target(projection.name, RebuildTarget(target, projection.version))
    return target, False


def compare(serving: Mapping[str, Any], rebuilt: Mapping[str, Any]) -> ViewDiff:
    """``dump()`` of the serving version against ``dump()`` of the rebuilt one."""
    return ViewDiff(differing=sorted(k for k in serving.keys() & rebuilt.keys() if serving[k] != rebuilt[k]),
                    missing=sorted(rebuilt.keys() - serving.keys()), extra=sorted(serving.keys() - rebuilt.keys()))


def _catch_up_to_heads(runner: ProjectionRunner, name: str, meter: _Meter) -> int:
    """Catch up until, checked right after, the target is at every leader's head; events read."""
    events = 0
    for _ in range(VERIFY_ATTEMPTS):
        try:
            events += runner.catch_up(on_round=meter)
        except VersionRetiredError as error:
            raise RebuildError(f"{error}: another rebuild switched {name}; nothing was switched") from None
        if runner.status()[name].lag == 0:
            return events
    raise RebuildError(f"{name} is still {runner.status()[name].lag} events behind after {VERIFY_ATTEMPTS} "
                       "catch-ups (events arrive faster than it applies them); nothing was switched, run it again")


class _Meter:
    """Turns each round's count into a ``Progress`` for the callback."""

    def __init__(self, runner: ProjectionRunner, name: str, report: Callable[[Progress], object] | None) -> None:
        status = runner.status()[name]
        self.name, self.version, self.report = name, status.version, report
        self.done = sum(leader.position for leader in status.leaders.values())
        self.total = sum(leader.head for leader in status.leaders.values())
        self.read, self.began = 0, time.monotonic()

    def __call__(self, read: int) -> None:
        self.read += read
        self.done += read
        self.total = max(self.total, self.done)
        if self.report is not None:
            rate = self.read / max(time.monotonic() - self.began, 1e-9)
            eta = (self.total - self.done) / rate if rate else None
            self.report(Progress(self.name, self.version, self.done, self.total, rate, eta))
