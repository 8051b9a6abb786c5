"""``clinic projections status|rebuild``: the read models in Redis, for operators at a terminal.

Like ``clinic audit``, it opens the event stores read-only and starts no runner. The views must be
in Redis (``CLINIC_REDIS_URL``): without it they live in the ``clinic serve`` process's memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TextIO

import redis

from application.bootstrap import build_applications, require_tables, view_store
from application.read_model_desk import ReadModelDesk
from application.settings import Settings, SettingsError
from interfaces.cli.main import settings
from projections import quarantine
from projections.base import Projection
from projections.catalog import ALL_PROJECTIONS, BY_NAME
from projections.rebuild import Progress, RebuildError, RebuildResult, ViewDiff, rebuild
from projections.store import ViewStore

NO_REDIS = "the views are in the clinic serve process's memory; set CLINIC_REDIS_URL to manage them"
LISTED = 20  # keys shown per kind of difference


def run_status(args: argparse.Namespace) -> int:
    apps, store, close = open_views(settings())
    try:
        report = status(apps, store)
    finally:
        close()
    print(json.dumps(report, indent=2) if args.json else render_status(report))
    return 0


def run_rebuild(args: argparse.Namespace) -> int:
    apps, store, close = open_views(settings())
    try:
        result = _rebuild(apps, store, args)
    except RebuildError as error:
        print(f"clinic: error: {error}", file=sys.stderr)
        return 1
    except redis.exceptions.ConnectionError as error:
        print(f"clinic: error: lost Redis ({error}); run the same command again to resume", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        target = store.rebuild_target(args.name)
        into = f" into v{target.version}" if target else ""
        print(f"interrupted: run `clinic projections rebuild {args.name}` again to resume{into}", file=sys.stderr)
        return 130
    finally:
        close()
    print(render_result(result))
    return 0


def _rebuild(apps: dict[str, Any], store: ViewStore, args: argparse.Namespace) -> RebuildResult:
    progress = ProgressLine(sys.stderr)
    try:
        return rebuild(apps, store, BY_NAME[args.name], batch_size=args.batch_size, dry_run=args.dry_run,
                       on_progress=progress)
    finally:
        progress.end()


def open_views(config: Settings) -> tuple[dict[str, Any], ViewStore, Callable[[], None]]:
    """The applications (read-only, no runner), the Redis view store, and a closer for both."""
    if not config.redis_url:
        raise SettingsError(NO_REDIS)
    if config.persistence == "memory":
        raise SettingsError("the events are in the clinic serve process's memory (CLINIC_PERSISTENCE=memory); "
                            "nothing to rebuild the views from here")
    store = view_store(config)
    try:
        store.serving_version(ALL_PROJECTIONS[0].name)
    except redis.exceptions.ConnectionError as error:
        raise SettingsError(f"cannot reach CLINIC_REDIS_URL: {error}") from None
    apps = build_applications(config, create_table=False)

    def close() -> None:
        for app in apps.values():
            app.close()
        getattr(store, "close", lambda: None)()

    try:
        require_tables(apps)
    except Exception:
        close()
        raise
    return apps, store, close


def status(apps: dict[str, Any], store: ViewStore) -> dict[str, Any]:
    """Per projection: the version readers use, its position and lag per leader, and any rebuild under way."""
    return {"projections": {name: {key: value for key, value in asdict(one).items() if key != "name"}
                            for name, one in ReadModelDesk(apps, store).status().items()}}


def render_status(report: dict[str, Any]) -> str:
    """The status as a table, one row per projection and leader."""
    lines = [f"{'projection':22} {'serving':>7} {'code':>4}  {'leader':14} {'position':>9} {'head':>9} "
             f"{'lag':>7} {'behind':>9}"]
    for name, p in report["projections"].items():
        for leader, s in p["leaders"].items():
            lines.append(f"{name:22} {'v' + str(p['serving_version']):>7} {'v' + str(p['code_version']):>4}  "
                         f"{leader:14} {s['position']:>9} {s['head']:>9} {s['lag']:>7} {s['lag_seconds']:>8.1f}s")
        if p["rebuild"]:
            lines.append(f"{'':22} rebuild into v{p['rebuild']['version']} under way: {p['rebuild']['lag']} events to "
                         f"go (`clinic projections rebuild {name}` resumes it)")
    return "\n".join(lines)


def render_result(result: RebuildResult) -> str:
    """What a rebuild did, for the terminal."""
    rate = result.events / result.seconds if result.seconds else 0.0
    built = (f"{result.events} events in {result.seconds:.1f}s ({rate:,.0f} events/s)"
             f"{', resumed' if result.resumed else ''}")
    if result.switched:
        return (f"rebuilt {result.name} into v{result.target}: {built}\nserving v{result.target} (was "
                f"v{result.serving_before}); deleted {result.deleted_keys} keys of v{result.serving_before}")
    return (f"dry run: built {result.name} v{result.target} beside serving v{result.serving_before}: {built}; "
            f"nothing switched (a rebuild continues into v{result.target})\n"
            + render_diff(result.diff, result.serving_before, result.target))


def render_diff(diff: ViewDiff | None, serving: int, target: int) -> str:
    """The keys that differ between the serving and the rebuilt version, a few of each kind."""
    if diff is None or diff.same:
        return f"v{serving} and v{target} hold the same views"
    lines = [f"v{serving} (serving) against v{target} (rebuilt):"]
    for title, keys in ((f"differing from v{target}", diff.differing), (f"missing from v{serving}", diff.missing),
                        (f"only in v{serving}", diff.extra)):
        if keys:
            lines.append(f"  {title}: {len(keys)}")
            lines += [f"    {key}" for key in keys[:LISTED]] + ([f"    ... {len(keys) - LISTED} more"]
                                                                if len(keys) > LISTED else [])
    return "\n".join(lines)


class ProgressLine:
    """Reports progress on ``stream``: one line rewritten in place on a terminal, else a line every few seconds."""

    def __init__(self, stream: TextIO, every: float | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.every = every if every is not None else (0.2 if self.tty else 2.0)
        self.last = 0.0
        self.open = False

    def __call__(self, progress: Progress) -> None:
        finished = progress.done >= progress.total
        if not finished and time.monotonic() - self.last < self.every:
            return
        self.last = time.monotonic()
        eta = "-" if progress.eta_seconds is None else _duration(progress.eta_seconds)
        share = 100.0 * progress.done / progress.total if progress.total else 100.0
        line = (f"{progress.name} v{progress.version}: {progress.done}/{progress.total} events ({share:.1f}%), "
                f"{progress.events_per_second:,.0f} events/s, ETA {eta}")
        self.open = self.tty and not finished
        self.stream.write(("\r" + line + ("\n" if finished else "")) if self.tty else line + "\n")
        self.stream.flush()

    def end(self) -> None:
        """Finish a line left open on a terminal."""
        if self.open:
            self.stream.write("\n")
            self.open = False


def _duration(seconds: float) -> str:
    whole = int(seconds + 0.5)
    return f"{whole // 3600}:{whole // 60 % 60:02}:{whole % 60:02}"


def run_errors(args: argparse.Namespace) -> int:
    """Every quarantined event, per projection (its serving version)."""
    _, store, close = open_views(settings())
    try:
        found = quarantine.listed(store, ALL_PROJECTIONS)
    finally:
        close()
    if args.json:
        print(json.dumps({name: [asdict(e) | {"id": e.id} for e in events] for name, events in found.items()}, indent=2))
        return 0
    lines = [f"{e.projection:22} {e.id:18} {e.topic.rpartition(':')[2]:32} {e.originator_id}@{e.originator_version}  "
             f"{e.at}  {e.error}" for events in found.values() for e in events]
    print("\n".join(lines) if lines else "no quarantined events")
    return 0


def run_retry(args: argparse.Namespace) -> int:
    """Apply quarantined events again; 1 if any still fails."""
    apps, store, close = open_views(settings())
    try:
        failing = 0
        for projection in _chosen(args.projection):
            applied, still = quarantine.retry(apps, store, projection, set(args.id) or None)
            failing += len(still)
            for entry in applied:
                print(f"{projection.name} {entry.id}: applied, out of the quarantine")
            for entry in still:
                print(f"{projection.name} {entry.id}: fails again, kept (see `clinic projections errors`)")
    finally:
        close()
    return 1 if failing else 0


def run_skip(args: argparse.Namespace) -> int:
    """Drop quarantined entries after confirmation."""
    if not args.yes:
        print("clinic: error: skip drops the entries for good (the views go without those events); add --yes "
              "to confirm", file=sys.stderr)
        return 1
    _, store, close = open_views(settings())
    try:
        for projection in _chosen(args.projection):
            for entry in quarantine.skip(store, projection, None if args.all else set(args.id)):
                print(f"{projection.name} {entry.id}: dropped")
    finally:
        close()
    return 0


def _chosen(name: str | None) -> list[Projection]:
    return [BY_NAME[name]] if name else list(ALL_PROJECTIONS)
