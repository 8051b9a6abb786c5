"""The benchmark harness behind ``clinic bench``: figures beside baselines, one table, one JSON file.

A benchmark is a function registered with :func:`benchmark`; it takes ``quick`` (and, if it
declares it, ``scale``: a hidden multiplier the smoke test uses to shrink the work) and returns
:class:`Figure` records, each a value measured beside a baseline in the same run. The runner
checks the servers each benchmark needs, skips (and says why) those whose servers are missing,
prints one table and writes the run, with the machine's facts, as JSON.

Modules register themselves on import: every module of this package is imported by
:func:`discover` (so a new ``benchmarks/<name>.py`` needs no edit here).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from benchmarks import servers

NOT_BENCHMARKS = {"harness", "servers", "serialisation", "cpu", "idle", "end_to_end_load"}
"""Modules of this package that register nothing (``serialisation`` is the standalone ADR 0002 script)."""


@dataclass(frozen=True)
class Figure:
    """One measured value beside the baseline it is judged against, measured in the same run."""

    name: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    notes: str = ""
    target: str | None = None
    """What the value should reach, in words (``≥ 3× baseline``, ``≤ 25 ms``); None: no target."""
    met: bool | None = None
    """Whether ``target`` is met (None when there is no target)."""
    higher_is_better: bool = True
    fields: dict[str, Any] = field(default_factory=dict)
    """More of the run behind the figure, written as top-level keys of its JSON (an end-to-end run's
    ``confirmed_per_s``, ``cpu_ms_per_booking``, ``p50_ms``...); none may be named like a field above."""

    def __post_init__(self) -> None:
        clash = set(self.fields) & ({f.name for f in dataclasses.fields(self)} | {"ratio"})
        if clash:
            raise ValueError(f"figure fields {sorted(clash)} would hide the figure's own")

    @property
    def ratio(self) -> float:
        """``value / baseline_value`` (0 when the baseline is 0)."""
        return self.value / self.baseline_value if self.baseline_value else 0.0

    def as_json(self) -> dict[str, Any]:
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "fields"}
        return own | {"ratio": self.ratio} | self.fields


BenchmarkFunction = Callable[..., list[Figure]]


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark: its name, what it needs, and the function that measures."""

    name: str
    function: BenchmarkFunction
    needs: tuple[str, ...] = ()
    """Servers or programs it needs: ``postgres``, ``redis``, ``rabbitmq``, ``wrk``."""
    summary: str = ""

    def run(self, quick: bool, scale: float) -> list[Figure]:
        if "scale" in inspect.signature(self.function).parameters:
            return self.function(quick, scale=scale)
        return self.function(quick)


REGISTRY: dict[str, Benchmark] = {}


def benchmark(name: str, needs: Iterable[str] = (), summary: str = "") -> Callable[[BenchmarkFunction],
                                                                                    BenchmarkFunction]:
    """Register the decorated function as the benchmark ``name``."""

    def register(function: BenchmarkFunction) -> BenchmarkFunction:
        REGISTRY[name] = Benchmark(name, function, tuple(needs), summary or (function.__doc__ or "").split("\n")[0])
        return function

    return register


def discover() -> dict[str, Benchmark]:
    """Import every module of this package (each registers its benchmarks) and return the registry."""
    package = Path(__file__).parent
    for module in pkgutil.iter_modules([str(package)]):
        if module.name not in NOT_BENCHMARKS and not module.name.startswith("_"):
            importlib.import_module(f"benchmarks.{module.name}")
    return REGISTRY


@dataclass
class Run:
    """One run's figures, skipped benchmarks (and why), failures and timing."""

    quick: bool
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    figures: list[Figure] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def as_json(self, machine: dict[str, Any]) -> dict[str, Any]:
        return {"started": self.started.isoformat(), "quick": self.quick, "machine": machine,
                "figures": [f.as_json() for f in self.figures], "skipped": self.skipped, "failed": self.failed,
                "seconds": self.seconds}


def run(names: Sequence[str] | None, quick: bool, scale: float = 1.0, out: TextIO = sys.stdout) -> Run:
    """Run the benchmarks ``names`` (all if None), in registration order; report progress on ``out``."""
    registry = discover()
    unknown = [n for n in names or () if n not in registry]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(registry)}")
    result = Run(quick)
    missing = servers.missing()
    for bench in (registry[n] for n in (names or list(registry))):
        absent = [missing[need] for need in bench.needs if need in missing]
        if absent:
            result.skipped[bench.name] = "; ".join(absent)
            print(f"skipped {bench.name}: {result.skipped[bench.name]}", file=out, flush=True)
            continue
        print(f"running {bench.name} ({bench.summary}) ...", file=out, flush=True)
        began = time.perf_counter()
        try:
            result.figures += bench.run(quick, scale)
        except Exception as error:  # noqa: BLE001 - one broken benchmark must not lose the others' figures
            result.failed[bench.name] = f"{error.__class__.__name__}: {error}"
            traceback.print_exc(file=out)
        result.seconds[bench.name] = round(time.perf_counter() - began, 2)
    return result


def table(figures: Sequence[Figure]) -> str:
    """The figures as one plain-text table: figure | value | baseline | ratio | target."""
    rows = [("figure", "value", "baseline", "ratio", "target")]
    for f in figures:
        target = "" if f.target is None else f"{f.target} ({'met' if f.met else 'NOT met'})"
        rows.append((f.name, f"{_number(f.value)} {f.unit}", f"{f.baseline}: {_number(f.baseline_value)}",
                     f"{f.ratio:.2f}", target))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def write_json(result: Run, path: Path) -> None:
    """The run and the machine's facts as JSON at ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.as_json(servers.machine()), indent=2) + "\n")
