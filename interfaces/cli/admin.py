"""``clinic token``, ``clinic db migrate`` and ``clinic openapi``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from application.bootstrap import migrate
from interfaces.cli.main import settings
from interfaces.security.tokens import TokenIssuer, load_or_create_dev_key


def run_token(args: argparse.Namespace) -> int:
    config = settings()
    issuer = TokenIssuer(load_or_create_dev_key(config.data_dir), config.jwt_issuer, config.jwt_audience)
    print(issuer.issue(args.sub, args.role, args.scope, ttl_seconds=args.ttl))
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    config = settings()
    for name in migrate(config):
        print(f"migrated {name} ({config.persistence})")
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
    from interfaces.gateway import SERVICES, Gateway

    upstreams = {service: [a for a in getattr(args, service).split(",") if a] for service in SERVICES}
    gateway = Gateway(args.listen, upstreams, Path(args.runtime_dir).resolve(), Path(args.spec).resolve())
    path = gateway.write(Path(args.output))
    print(f"wrote {path}; run: nginx -e {gateway.runtime_dir}/error.log -p {gateway.runtime_dir} -c {path.resolve()}")
    return 0
