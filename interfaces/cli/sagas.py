"""``clinic sagas``: list, show, retry and compensate sagas — through the HTTP API, as the console does.

The commands call a running API (``--api``, ``CLINIC_API_URL``; the gateway in distributed mode), never
a store: the service that owns the sagas keeps them cached, and a second writer beside it would go behind
its cache. The bearer token is ``CLINIC_TOKEN``; without one, where tokens are signed by the development
key (embedded mode), the command signs its own for ``--operator`` (an auditor's to read, an admin's to
act), as ``clinic token`` would.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any

import httpx

from domain.values import Role
from interfaces.cli.main import settings
from interfaces.security.trust import dev_issuer, uses_dev_key

TIMEOUT_SECONDS = 30.0
_READS = {"list", "show"}


class CommandError(Exception):
    """Said to the operator as ``clinic: error: …``; exit 1."""


def run_sagas(args: argparse.Namespace) -> int:
    if args.sagas_command == "compensate" and not args.yes:
        print("clinic: error: compensating releases the saga's slot and rejects its consultation; add --yes to "
              "confirm", file=sys.stderr)
        return 2
    try:
        with httpx.Client(base_url=args.api, timeout=TIMEOUT_SECONDS, headers=_headers(args)) as api:
            _ACTIONS[args.sagas_command](api, args)
    except CommandError as error:
        print(f"clinic: error: {error}", file=sys.stderr)
        return 1
    except httpx.TransportError as error:
        print(f"clinic: error: cannot reach the API at {args.api}: {error or type(error).__name__}", file=sys.stderr)
        return 1
    return 0


def _headers(args: argparse.Namespace) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(args)}", "Accept": "application/json"}


def _token(args: argparse.Namespace) -> str:
    if token := os.environ.get("CLINIC_TOKEN", "").strip():
        return token
    config = settings()
    if not uses_dev_key(config):
        raise SystemExit("clinic: error: set CLINIC_TOKEN to an admin's or auditor's access token (tokens here are "
                         "issued by the authorization server, not the development key)")
    role = Role.AUDITOR if args.sagas_command in _READS else Role.ADMIN
    return dev_issuer(config).issue(args.operator, [role], ttl_seconds=300)


def _list(api: httpx.Client, args: argparse.Namespace) -> None:
    query = {"state": args.state, "correlation_id": args.correlation_id, "patient_id": args.patient,
             "doctor_id": args.doctor, "since": args.since, "until": args.until, "limit": args.limit,
             "cursor": args.cursor}
    page = _answer(api.get("/v1/sagas", params={k: v for k, v in query.items() if v is not None}))
    if args.json:
        print(json.dumps(page, indent=2))
        return
    for saga in page["items"]:
        ended = f" ({saga['rejection_reason']})" if saga["rejection_reason"] else ""
        print(f"{saga['saga_id']}  {saga['kind']:<10}  {saga['state'] + ended:<40}  started {saga['started_at']}"
              f"{'  STUCK' if saga['stuck'] else ''}")
    print(f"{len(page['items'])} saga(s)" + (f"; more with --cursor {page['next_cursor']}" if page["next_cursor"] else ""))


def _show(api: httpx.Client, args: argparse.Namespace) -> None:
    print(json.dumps(_answer(api.get(f"/v1/sagas/{args.saga_id}")), indent=2))


def _act(path: str, done: str) -> Any:
    def act(api: httpx.Client, args: argparse.Namespace) -> None:
        taken = api.post(f"/v1/sagas/{args.saga_id}/{path}", headers={"Idempotency-Key": str(uuid.uuid4())})
        _answer(taken)  # then read what it led to, once the saga's view has caught up with the action
        saga = _answer(api.get(f"/v1/sagas/{args.saga_id}", headers={"X-Min-Position": taken.headers["X-Event-Position"]}))
        reason = f" ({saga['rejection_reason']})" if saga["rejection_reason"] else ""
        print(f"{done} saga {args.saga_id}; it is now {saga['state']}{reason}")

    return act


def _answer(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    detail = problem.get("detail") or problem.get("title") or response.reason_phrase
    retry = f" (retry after {response.headers['Retry-After']} s)" if "Retry-After" in response.headers else ""
    raise CommandError(f"{response.status_code} {detail}{retry}")


_ACTIONS = {
    "list": _list,
    "show": _show,
    "retry": _act("retry-validation", "asked the registry again for"),
    "compensate": _act("compensate", "compensated"),
}
