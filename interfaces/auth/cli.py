"""``clinic run auth``, ``clinic auth client|user ...`` and ``clinic keys init|rotate|list``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from datetime import timedelta

import uvicorn
from opentelemetry.sdk.trace import TracerProvider

from application.settings import Settings
from infrastructure.observability.logging import configure_logging
from infrastructure.observability.metrics import Metrics
from infrastructure.tls import Pki
from interfaces.auth.accounts import Accounts
from interfaces.auth.app import create_auth_app
from interfaces.auth.hashing import check_password, new_client_secret
from interfaces.auth.keyring import KeyRingFile, utc_now
from interfaces.auth.service import AuthService
from interfaces.cli.graceful import GRACE_SECONDS, Server, serve_until_stopped
from interfaces.cli.main import settings

log = logging.getLogger("clinic.auth")
DEFAULT_PORT = 9000
PASSWORD_VARIABLE = "CLINIC_AUTH_USER_PASSWORD"


async def serve_auth(args: argparse.Namespace, config: Settings, stop: asyncio.Event,
                     tracing: TracerProvider | None = None) -> int:
    """Serve the authorization server until SIGTERM/SIGINT (``stop``), then drain like an API (readiness 503,
    still serving for ``CLINIC_DRAIN_SECONDS``); creates the key ring on first start.
    With ``tracing`` (``clinic run`` configures it), its requests are server spans."""
    configure_logging("auth", config.log_level, json=config.log_format == "json")
    service = AuthService.from_settings(config)
    if service.keys.init(utc_now()):
        log.info("created signing keys (current + next) in %s", service.keys.path)
    service.checks["accepting"] = lambda: not stop.is_set()
    app = create_auth_app(service, Metrics.for_service("auth"), tracer_provider=tracing)
    options = {"host": args.host, "log_level": "info", "log_config": None, "timeout_graceful_shutdown": GRACE_SECONDS}
    servers = [Server(uvicorn.Config(app, port=args.port or DEFAULT_PORT, **options, **config.proxy_options))]
    if args.internal_port:  # the same app over HTTPS, reached directly (never through a proxy)
        pki = Pki.open(config.pki, services=("auth",))
        servers.append(Server(uvicorn.Config(app, port=args.internal_port, ssl_certfile=str(pki.cert_file("auth")),
                                             ssl_keyfile=str(pki.key_file("auth")), **options)))
    log.info("authorization server for issuer %s", service.issuer)
    return await serve_until_stopped(servers, stop, config.drain_seconds)


def run_client_add(args: argparse.Namespace) -> int:
    """Register a client; a confidential client's secret is printed here, once, and never again."""
    secret = None if args.public else new_client_secret()
    client = Accounts(settings().auth).add_client(args.client_id, args.scope, args.redirect_uri or [],
                                                  args.role or [], secret)
    kind = "public" if client.public else "confidential"
    print(f"registered {kind} client {client.client_id} (scopes: {' '.join(client.scopes)})", file=sys.stderr)
    if secret is not None:
        print("its secret follows; it is shown only now, store it in a secret manager:", file=sys.stderr)
        print(secret)
    return 0


def run_client_list(args: argparse.Namespace) -> int:
    """Every registered client: id, type, scopes, roles, redirect URIs (never a secret or its hash)."""
    for client in Accounts(settings().auth).clients():
        kind = "public" if client.public else "confidential"
        print(f"{client.client_id}\t{kind}\tscopes={' '.join(client.scopes)}\troles={','.join(client.roles) or '-'}"
              f"\tredirect_uris={' '.join(client.redirect_uris) or '-'}")
    return 0


def run_user_add(args: argparse.Namespace) -> int:
    """Register a user; the password comes from stdin or ``CLINIC_AUTH_USER_PASSWORD``, never from argv."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif os.environ.get(PASSWORD_VARIABLE):
        password = os.environ[PASSWORD_VARIABLE]
    else:
        raise ValueError(f"give the password on stdin with --password-stdin, or in {PASSWORD_VARIABLE}")
    user = Accounts(settings().auth).add_user(args.username, args.sub, args.role, check_password(password))
    print(f"registered user {user.username} (sub {user.sub}, roles {' '.join(user.roles)})")
    return 0


def run_keys_init(args: argparse.Namespace) -> int:
    """Create the key ring (current + next) unless it exists."""
    keys = KeyRingFile(settings().auth)
    created = keys.init(utc_now())
    print(f"{'created' if created else 'kept the existing'} signing keys in {keys.path}")
    return _print_keys(keys, settings())


def run_keys_rotate(args: argparse.Namespace) -> int:
    """current → retired, next → current, a new next; retired keys whose tokens all expired are pruned."""
    config = settings()
    keys = KeyRingFile(config.auth)
    ring = keys.rotate(utc_now(), timedelta(0) if args.drop_retired else _keep(config))
    print(f"rotated: {ring.current().kid} signs from now on")
    return _print_keys(keys, config)


def run_keys_list(args: argparse.Namespace) -> int:
    """Each key's kid, state and dates."""
    config = settings()
    return _print_keys(KeyRingFile(config.auth), config)


def _print_keys(keys: KeyRingFile, config: Settings) -> int:
    keep = _keep(config)
    print("kid\tstate\tcreated_at\tactivated_at\tretired_at\tpublished_until")
    for key in keys.ring().keys:
        until = key.published_until(keep)
        print("\t".join([key.kid, key.state, key.created_at.isoformat(),
                         *(moment.isoformat() if moment else "-" for moment in (key.activated_at, key.retired_at,
                                                                                 until))]))
    return 0


def _keep(config: Settings) -> timedelta:
    """How long a retired key stays published: the token lifetime plus the verifiers' leeway."""
    return timedelta(seconds=config.access_token_ttl_seconds + config.jwt_leeway_seconds)
