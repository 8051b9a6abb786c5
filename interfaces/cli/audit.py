"""``clinic audit``: an aggregate rebuilt from its stream, for auditors at a terminal. Auditing a patient
reads their personal data: the read goes to their access log as ``cli:<OS user>``, as the API's does."""

from __future__ import annotations

import argparse
import getpass
import json

from application.audit import plain
from application.bootstrap import open_stores
from application.views import AuditTrail
from interfaces.cli.main import settings


def run_audit(args: argparse.Namespace) -> int:
    clinic = open_stores(settings())
    try:
        trail = clinic.audit(args.kind, args.id, reader=f"cli:{getpass.getuser()}", roles=(), operation="clinic audit",
                             version=args.version, as_of=args.as_of)
    finally:
        clinic.close()
    print(json.dumps(plain(trail), indent=2) if args.json else render(trail))
    return 0


def render(trail: AuditTrail) -> str:
    """The trail as a table of events, then the rebuilt state."""
    lines = [f"{trail.kind} {trail.aggregate_id} at version {trail.version}", "",
             f"{'v':>3}  {'timestamp':32}  {'event':34}  {'actor':38}  correlation_id"]
    for e in trail.events:
        lines.append(f"{e.version:>3}  {e.timestamp.isoformat():32}  {e.type:34}  {e.actor or '-':38}  "
                     f"{e.correlation_id or '-'}")
        if e.data:
            lines.append(f"{'':5}data: {json.dumps(plain(e.data), sort_keys=True)}")
    lines += ["", "state:", json.dumps(plain(trail.state), indent=2, sort_keys=True)]
    return "\n".join(lines)
