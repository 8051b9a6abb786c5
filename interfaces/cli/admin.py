"""``clinic token``, ``clinic db migrate`` and ``clinic openapi``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from application.bootstrap import database_roles_of, migrate
from infrastructure.database_roles import RolesError
from interfaces.cli.main import settings
from interfaces.security.trust import dev_issuer


def run_token(args: argparse.Namespace) -> int:
    config = settings()
    scope = args.scope or None  # none given: every scope the roles may be granted
    print(dev_issuer(config).issue(args.sub, args.role, scope, ttl_seconds=args.ttl))
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    config = settings()
    try:
        migrated = migrate(config, roles=args.roles)
    except RolesError as error:
        print(f"clinic: error: {error}", file=sys.stderr)
        return 1
    for name in migrated:
        print(f"migrated {name} ({config.persistence})")
    if args.roles:
        print(f"granted {', '.join(database_roles_of(args.roles).values())}")
    return 0


def run_openapi(args: argparse.Namespace) -> int:
    from interfaces.http.spec import openapi_document

    document = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    if args.output:
        Path(args.output).write_text(document)
        print(f"wrote {args.output}")
    else:
        print(document, end="")
    return 0


def run_gateway(args: argparse.Namespace) -> int:
    from interfaces.gateway import OPTIONAL, SERVICES, Gateway

    upstreams = {name: [a for a in (getattr(args, name) or "").split(",") if a] for name in [*SERVICES, *OPTIONAL]}
    gateway = Gateway(args.listen, upstreams, Path(args.runtime_dir).resolve(), Path(args.spec).resolve(),
                      Path(args.guide).resolve(), per_address=args.per_address, per_token=args.per_token)
    path = gateway.write(Path(args.output))
    print(f"wrote {path}; run: nginx -e {gateway.runtime_dir}/error.log -p {gateway.runtime_dir} -c {path.resolve()}")
    return 0
