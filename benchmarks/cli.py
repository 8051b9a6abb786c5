"""``clinic bench``: measure the clinic's figures, each beside its baseline, in one run.

The one module of ``benchmarks`` the product names (the ``clinic`` command loads it by name when
``bench`` is run); nothing in the product imports the benchmarks (an import contract in pyproject.toml).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import harness

DEFAULT_DIR = Path(".clinic-data/bench")


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmarks (all, or ``--only``), print one table, write the run as JSON."""
    if args.list:
        for bench in harness.discover().values():
            print(f"{bench.name:24} needs {', '.join(bench.needs) or 'nothing':33} {bench.summary}")
        return 0
    result = harness.run(args.only, quick=args.quick, scale=args.scale, out=sys.stderr)
    print(harness.table(result.figures))
    for name, reason in result.skipped.items():
        print(f"skipped {name}: {reason}")
    for name, error in result.failed.items():
        print(f"FAILED {name}: {error}")
    path = Path(args.json) if args.json else DEFAULT_DIR / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    harness.write_json(result, path)
    print(f"wrote {path}")
    return 1 if result.failed else 0
