"""``clinic audit``: an aggregate rebuilt from its stream, for auditors at a terminal. Auditing a patient
reads their personal data: the read goes to their access log as ``cli:<OS user>``, as the API's does."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
from uuid import UUID

from application.audit import plain
from application.bootstrap import open_stores
from application.clinic import Clinic
from application.views import AuditTrail
from infrastructure.event_chain import PostgresEventChain, Verification
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
    chain = f"; hash chain: {trail.integrity}" if trail.integrity else ""
    lines = [f"{trail.kind} {trail.aggregate_id} at version {trail.version}{chain}", "",
             f"{'v':>3}  {'timestamp':32}  {'event':34}  {'actor':38}  correlation_id"]
    for e in trail.events:
        lines.append(f"{e.version:>3}  {e.timestamp.isoformat():32}  {e.type:34}  {e.actor or '-':38}  "
                     f"{e.correlation_id or '-'}")
        if e.data:
            lines.append(f"{'':5}data: {json.dumps(plain(e.data), sort_keys=True)}")
    lines += ["", "state:", json.dumps(plain(trail.state), indent=2, sort_keys=True)]
    return "\n".join(lines)


def run_verify(args: argparse.Namespace) -> int:
    """Each store's chains computed again; one line per store (and per broken stream); exit 1 if any broke."""
    if args.stream and (args.all or len(args.stream) != 2):
        raise ValueError("give a stream as KIND ID, or --all (the default), not both")
    clinic = open_stores(settings())
    try:
        results = _verify(clinic, args.stream)
    finally:
        clinic.close()
    if args.json:
        print(json.dumps([dataclasses.asdict(result) for result in results], indent=2, default=str))
    else:
        print(render_verification(results))
    return 1 if any(result.broken for result in results) else 0


def _verify(clinic: Clinic, stream: list[str]) -> list[Verification]:
    if stream:
        kind, aggregate_id = stream[0], UUID(stream[1])
        apps = [clinic.auditor.store_of(kind)]
    else:
        aggregate_id, apps = None, clinic.apps()
    chains = [(app.name, PostgresEventChain.of(app)) for app in apps]
    unchained = [name for name, chain in chains if chain is None]
    if unchained:
        raise ValueError(f"no hash chain in the {', '.join(unchained)} store(s): chains are kept in PostgreSQL only")
    return [chain.verify(aggregate_id) for _, chain in chains if chain is not None]


def render_verification(results: list[Verification]) -> str:
    lines = []
    for result in results:
        state = "broken" if result.broken else "verified"
        lines.append(f"{result.store:14} {state:8} {result.streams} streams, {result.events} events")
        lines += [f"  {b.originator_id} at version {b.version}: {b.why}" for b in result.broken]
    return "\n".join(lines)
