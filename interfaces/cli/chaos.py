"""``clinic chaos``: run the chaos soak and print its invariants; exit 1 if one did not hold."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from interfaces.local_deployment.chaos import render, run
from interfaces.local_deployment.servers import DeploymentError


def run_chaos(args: argparse.Namespace) -> int:
    try:
        report = run(args.seed, args.minutes, args.rate, args.every, say=lambda line: print(line, flush=True))
    except DeploymentError as error:
        print(f"clinic: error: {error}", file=sys.stderr)
        return 1
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(dataclasses.asdict(report), indent=2) + "\n")
    return 0 if report.held else 1
