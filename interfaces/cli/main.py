"""The ``clinic`` command: serve, run, demo, audit, sagas, token, db migrate, broker, certs init, openapi, chaos,
observe, bench."""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from uuid import UUID

from application.bootstrap import AUDITED_KINDS, StoreNotReadyError, StoreUnavailableError
from application.contexts import CONTEXTS, SERVICE_NAMES
from application.settings import Settings, SettingsError
from application.views import SAGA_STATE_FILTERS
from domain.base import DomainError
from domain.values import Role
from interfaces.gateway import PER_ADDRESS, PER_TOKEN
from interfaces.http.contexts import GATEWAY_SERVICES


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (DomainError, SettingsError, StoreNotReadyError, StoreUnavailableError, ValueError) as error:
        print(f"clinic: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinic", description="Book clinic consultations, run as sagas.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP API (embedded mode: no servers needed)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=_lazy("interfaces.cli.serve", "run_serve"))

    run = commands.add_parser("run", help="run one context as a service (distributed mode: PostgreSQL, RabbitMQ)")
    run.add_argument("service", nargs="?", default=os.environ.get("CLINIC_SERVICE"),
                     choices=[*SERVICE_NAMES, "projections", "auth", "console"],
                     help="the context to run, the projection worker, the authorization server or the operations "
                          "console (default: $CLINIC_SERVICE)")
    run.add_argument("--role", choices=["api", "worker", "all"], default="all",
                     help="api: the context's part of /v1; worker: relay, consumer, saga timer; all: both")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=None, help="public API port (default 8000; auth: 9000)")
    run.add_argument("--internal-port", type=int, default=None,
                     help="registry: its mTLS endpoint's port (default 8443); auth: also serve HTTPS here, with "
                          "its certificate from CLINIC_PKI_DIR, for the services in the cluster (default: not)")
    run.set_defaults(run=_lazy("interfaces.cli.run", "run_service"))

    demo = commands.add_parser("demo", help="walk through bookings, compensations and an audit replay")
    demo.add_argument("--data-dir", help="keep the demo's event stores here (default: a temporary directory)")
    demo.set_defaults(run=_lazy("interfaces.cli.demo", "run_demo"))

    audit = commands.add_parser("audit", help="rebuild an aggregate from its stream, at a version or a moment; "
                                "or verify the streams' hash chains")
    targets = audit.add_subparsers(dest="kind", required=True, metavar="KIND|verify")
    for kind in AUDITED_KINDS:
        one = targets.add_parser(kind, help=f"rebuild a {kind} from its stream")
        one.add_argument("id", type=UUID, help="the aggregate's id")
        when = one.add_mutually_exclusive_group()
        when.add_argument("--version", type=_positive_int, help="rebuild at this version")
        when.add_argument("--as-of", type=_aware_datetime, help="rebuild as it was at this ISO 8601 moment")
        one.add_argument("--json", action="store_true", help="print JSON instead of a table")
        one.set_defaults(run=_lazy("interfaces.cli.audit", "run_audit"))
    verify = targets.add_parser("verify", help="check every event's hash chain (PostgreSQL stores); exit 1 at a "
                                "broken link")
    verify.add_argument("stream", nargs="*", metavar="KIND ID", help="one stream (default: --all)")
    verify.add_argument("--all", action="store_true", help="every stream of every context (the default)")
    verify.add_argument("--json", action="store_true", help="print JSON instead of lines")
    verify.set_defaults(run=_lazy("interfaces.cli.audit", "run_verify"))

    token = commands.add_parser("token", help="print a JWT signed with the local development key")
    token.add_argument("--sub", required=True, help="subject: a patient_id, a doctor_id or a staff id")
    token.add_argument("--role", action="append", required=True, choices=[r.value for r in Role],
                       help="repeat for several roles")
    token.add_argument("--scope", action="append", default=[], help="repeat for several scopes")
    token.add_argument("--ttl", type=_positive_int, default=3600, help="lifetime in seconds")
    token.set_defaults(run=_lazy("interfaces.cli.admin", "run_token"))

    db = commands.add_parser("db", help="event store administration")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    migrate = db_commands.add_parser("migrate", help="create every context's tables (run once, before workers)")
    migrate.add_argument("--roles", metavar="PREFIX", type=_role_prefix,
                         help="also create and grant each context's login role PREFIX_<service> and the "
                              "projection worker's PREFIX_projections (PostgreSQL; docs/security.md)")
    migrate.set_defaults(run=_lazy("interfaces.cli.admin", "run_migrate"))

    certs = commands.add_parser("certs", help="development certificates for mTLS between services")
    certs_commands = certs.add_subparsers(dest="certs_command", required=True, metavar="COMMAND")
    certs_init = certs_commands.add_parser(
        "init", help="create a CA and one certificate per service (keeps an existing CA unless --force)")
    certs_init.add_argument("--dir", help="where to write them (default: $CLINIC_DATA_DIR/pki)")
    certs_init.add_argument("--days", type=_positive_int, default=365, help="service certificates' lifetime")
    certs_init.add_argument("--force", action="store_true", help="replace the CA and re-issue every certificate")
    certs_init.set_defaults(run=_lazy("interfaces.cli.certs", "run_certs_init"))

    _add_dlq_parser(commands)
    _add_sagas_parser(commands)
    _add_broker_parser(commands)
    _add_projections_parser(commands)
    _add_gdpr_parser(commands)
    _add_auth_parsers(commands)

    gateway = commands.add_parser("gateway", help="write the nginx gateway config for distributed mode")
    gateway.add_argument("--listen", default="127.0.0.1:8080")
    for service in GATEWAY_SERVICES:
        gateway.add_argument(f"--{service}", required=True, metavar="HOST:PORT[,HOST:PORT...]",
                             help=f"the {service} service's API replicas")
    gateway.add_argument("--console", metavar="HOST:PORT[,HOST:PORT...]",
                         help="the operations console's replicas (clinic run console), served at /console")
    gateway.add_argument("--runtime-dir", default=".clinic-data/gateway", help="nginx's pid, logs and temp files")
    gateway.add_argument("--spec", default="specs/openapi.json", help="the OpenAPI document to serve")
    gateway.add_argument("--guide", default="docs/deprecation.md",
                         help="the deprecation guide to serve at /docs/deprecation.md (deprecated operations link it)")
    gateway.add_argument("--output", default=".clinic-data/gateway/nginx.conf")
    gateway.add_argument("--per-address", type=_positive_int, default=PER_ADDRESS,
                         help=f"requests per second from one client address (burst: twice that); default {PER_ADDRESS}")
    gateway.add_argument("--per-token", type=_positive_int, default=PER_TOKEN,
                         help=f"requests per second with one bearer token (burst: twice that); default {PER_TOKEN}")
    gateway.set_defaults(run=_lazy("interfaces.cli.admin", "run_gateway"))

    chaos = commands.add_parser("chaos", help="the distributed deployment on private servers under steady bookings "
                                "and a seeded schedule of faults; then checks the invariants (docs/runbook.md)")
    chaos.add_argument("--minutes", type=_positive_number, default=10.0, help="how long the load runs (default 10)")
    chaos.add_argument("--seed", type=int, default=1, help="the schedule's seed: the same seed, the same faults")
    chaos.add_argument("--rate", type=_positive_number, default=2.0, help="bookings per second (default 2)")
    chaos.add_argument("--every", type=_positive_number, default=30.0,
                       help="seconds between faults: the next starts every/2 to every after one ends (default 30)")
    chaos.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    chaos.set_defaults(run=_lazy("interfaces.cli.chaos", "run_chaos"))

    observe = commands.add_parser("observe", help="the distributed deployment on private servers watched by "
                                  "Prometheus and Alertmanager with the committed configuration; prints their URLs "
                                  "and each alert as it is delivered (docs/observability.md)")
    observe.add_argument("--minutes", type=_positive_number, help="stop after this long (default: at Ctrl-C)")
    observe.set_defaults(run=_lazy("interfaces.cli.observe", "run_observe"))

    bench = commands.add_parser("bench", help="measure the figures of docs/performance.md, each beside its baseline")
    bench.add_argument("--quick", action="store_true", help="smaller runs: the whole suite in under 5 minutes")
    bench.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks (see --list)")
    bench.add_argument("--json", metavar="PATH", help="where to write the run (default .clinic-data/bench/<time>.json)")
    bench.add_argument("--list", action="store_true", help="list the benchmarks and what each needs")
    bench.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)  # tests: shrink the work
    bench.set_defaults(run=_lazy("benchmarks.cli", "run_bench"))  # the benchmarks' one entry point

    openapi = commands.add_parser("openapi", help="print (or write) the OpenAPI document")
    openapi.add_argument("--output", help="write to this file instead of stdout")
    openapi.set_defaults(run=_lazy("interfaces.cli.admin", "run_openapi"))
    return parser


def _add_broker_parser(commands: argparse._SubParsersAction) -> None:
    broker = commands.add_parser("broker", help="the broker's exchange and queues, and each service's user")
    actions = broker.add_subparsers(dest="broker_command", required=True, metavar="COMMAND")
    setup = actions.add_parser("setup", help="declare the exchange and every follower's queues (as the broker's "
                               "administrator, before services with their own users start)")
    setup.set_defaults(run=_lazy("interfaces.cli.broker", "run_setup"))
    permissions = actions.add_parser("permissions", help="print the rabbitmqctl commands that give each service's "
                                     "own user exactly what it needs")
    permissions.add_argument("--vhost", default="/", help="the virtual host (default /)")
    permissions.set_defaults(run=_lazy("interfaces.cli.broker", "run_permissions"))


def _add_sagas_parser(commands: argparse._SubParsersAction) -> None:
    sagas = commands.add_parser("sagas", help="booking and reschedule sagas: list, show, retry, compensate (through "
                                              "the HTTP API)")
    sagas.add_argument("--api", default=os.environ.get("CLINIC_API_URL", "http://127.0.0.1:8000"),
                       help="the API's base URL (CLINIC_API_URL; default http://127.0.0.1:8000)")
    sagas.add_argument("--operator", default=getpass.getuser(),
                       help="who you are, the actor of what you do (only without CLINIC_TOKEN, where tokens are "
                            "signed by the development key; default: your user name)")
    sagas.set_defaults(run=_lazy("interfaces.cli.sagas", "run_sagas"))
    actions = sagas.add_subparsers(dest="sagas_command", required=True, metavar="COMMAND")
    listing = actions.add_parser("list", help="sagas newest first, narrowed by any of the filters")
    listing.add_argument("--state", choices=SAGA_STATE_FILTERS)
    listing.add_argument("--correlation-id", help="started by the request with this X-Correlation-Id")
    listing.add_argument("--patient", type=UUID, help="this patient's")
    listing.add_argument("--doctor", type=UUID, help="with this doctor")
    listing.add_argument("--since", type=_day, help="started on this day (YYYY-MM-DD, UTC) or later")
    listing.add_argument("--until", type=_day, help="started on this day (YYYY-MM-DD, UTC) or earlier")
    listing.add_argument("--limit", type=_positive_int, default=20, help="at most this many (default 20, at most 100)")
    listing.add_argument("--cursor", help="the next page, as the previous one said")
    listing.add_argument("--json", action="store_true", help="the API's page as JSON")
    for name, text in (("show", "a saga's state and every step it took, as JSON"),
                       ("retry", "ask the registry again now for a saga waiting on it (an admin)"),
                       ("compensate", "release the saga's slot and reject its consultation now (an admin)")):
        action = actions.add_parser(name, help=text)
        action.add_argument("saga_id", type=UUID)
        if name == "compensate":
            action.add_argument("--yes", action="store_true", help="confirm: compensating cannot be undone")


def _add_dlq_parser(commands: argparse._SubParsersAction) -> None:
    dlq = commands.add_parser("dlq", help="a follower's dead letters: list, show, redrive, purge")
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")

    def action(name: str, text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=text)
        parser.add_argument("follower", choices=sorted(context.service for context in CONTEXTS if context.follows))
        parser.set_defaults(run=_lazy("interfaces.cli.dlq", "run_dlq"))
        return parser

    listing = action("list", "list dead letters (they stay in the queue)")
    listing.add_argument("--limit", type=_positive_int, default=100)
    listing.add_argument("--json", action="store_true")
    action("show", "one dead letter, whole").add_argument("message_id")
    which = action("redrive", "send back to the follower's queue, attempts reset").add_mutually_exclusive_group(
        required=True)
    which.add_argument("message_id", nargs="?")
    which.add_argument("--all", action="store_true")
    action("purge", "delete every dead letter").add_argument(
        "--yes", action="store_true", help="confirm: the messages are deleted for good")


def _add_projections_parser(commands: argparse._SubParsersAction) -> None:
    from projections.catalog import BY_NAME

    projections = commands.add_parser("projections", help="the read models in Redis: status, blue-green rebuild, quarantined events")
    actions = projections.add_subparsers(dest="projections_command", required=True, metavar="COMMAND")
    status = actions.add_parser("status", help="each projection's serving version, positions, heads and lag")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(run=_lazy("interfaces.cli.projections", "run_status"))
    rebuild = actions.add_parser("rebuild", help="build a new version beside the serving one, switch, drop the old "
                                 "(resumes an interrupted rebuild)")
    rebuild.add_argument("name", choices=sorted(BY_NAME), help="the projection")
    rebuild.add_argument("--dry-run", action="store_true",
                         help="build the new version and list how the serving one differs; switch nothing")
    rebuild.add_argument("--batch-size", type=_positive_int, default=1000, help="notifications per batch")
    rebuild.set_defaults(run=_lazy("interfaces.cli.projections", "run_rebuild"))
    errors = actions.add_parser("errors", help="the events each projection quarantined (it raised on them)")
    errors.add_argument("--json", action="store_true", help="print JSON instead of lines")
    errors.set_defaults(run=_lazy("interfaces.cli.projections", "run_errors"))
    retry = actions.add_parser("retry", help="apply quarantined events again (after a fix): those that apply leave "
                               "the quarantine")
    retry.add_argument("--projection", choices=sorted(BY_NAME), help="only this projection's")
    retry.add_argument("id", nargs="*", metavar="LEADER:NOTIFICATION", help="these entries (default: every one)")
    retry.set_defaults(run=_lazy("interfaces.cli.projections", "run_retry"))
    skip = actions.add_parser("skip", help="drop quarantined events for good (the views go without them)")
    skip.add_argument("--projection", choices=sorted(BY_NAME), help="only this projection's")
    chosen = skip.add_mutually_exclusive_group(required=True)
    chosen.add_argument("id", nargs="*", default=[], metavar="LEADER:NOTIFICATION", help="these entries")
    chosen.add_argument("--all", action="store_true", help="every entry (of --projection, else of all)")
    skip.add_argument("--yes", action="store_true", help="confirm: the entries are dropped for good")
    skip.set_defaults(run=_lazy("interfaces.cli.projections", "run_skip"))


def _add_auth_parsers(commands: argparse._SubParsersAction) -> None:
    from infrastructure.security.scopes import Scope

    auth = commands.add_parser("auth", help="the authorization server's clients and users")
    kinds = auth.add_subparsers(dest="auth_kind", required=True, metavar="KIND")
    clients = kinds.add_parser("client", help="OAuth2 clients").add_subparsers(
        dest="auth_command", required=True, metavar="COMMAND")
    add = clients.add_parser("add", help="register a client (a confidential client's secret is printed once)")
    add.add_argument("client_id")
    add.add_argument("--scope", action="append", required=True, choices=[s.value for s in Scope],
                     help="repeat for several scopes")
    add.add_argument("--redirect-uri", action="append", help="code flow: repeat for several (exact match)")
    add.add_argument("--role", action="append", choices=[r.value for r in Role],
                     help="roles of the client's own tokens (client credentials)")
    add.add_argument("--public", action="store_true", help="no secret: a browser or native app (code + PKCE)")
    add.set_defaults(run=_lazy("interfaces.auth.cli", "run_client_add"))
    clients.add_parser("list", help="registered clients (never their secrets)").set_defaults(
        run=_lazy("interfaces.auth.cli", "run_client_list"))
    users = kinds.add_parser("user", help="people who sign in").add_subparsers(
        dest="auth_command", required=True, metavar="COMMAND")
    user = users.add_parser("add", help="register a user (password: --password-stdin or $CLINIC_AUTH_USER_PASSWORD)")
    user.add_argument("username")
    user.add_argument("--sub", required=True, help="their patient_id, doctor_id or staff id")
    user.add_argument("--role", action="append", required=True, choices=[r.value for r in Role])
    user.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    user.set_defaults(run=_lazy("interfaces.auth.cli", "run_user_add"))

    keys = commands.add_parser("keys", help="the authorization server's signing keys: init, rotate, list")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    for name, text in (("init", "create current + next keys (keeps an existing ring)"),
                       ("rotate", "current -> retired, next -> current, new next; prune expired retired keys"),
                       ("list", "each key's kid, state and dates")):
        action = actions.add_parser(name, help=text)
        action.set_defaults(run=_lazy("interfaces.auth.cli", f"run_keys_{name}"))
        if name == "rotate":
            action.add_argument("--drop-retired", action="store_true",
                                help="a leaked key: unpublish every retired key now (their tokens stop verifying)")


def _add_gdpr_parser(commands: argparse._SubParsersAction) -> None:
    gdpr = commands.add_parser("gdpr", help="erase a patient's personal data (crypto-shredding)")
    actions = gdpr.add_subparsers(dest="gdpr_command", required=True, metavar="COMMAND")
    erase = actions.add_parser("erase", help="destroy the patient's data key and record the erasure")
    erase.add_argument("patient_id", type=UUID, help="the patient's id")
    erase.add_argument("--yes", action="store_true", help="confirm: the personal data is gone for good")
    erase.set_defaults(run=_lazy("interfaces.cli.gdpr", "run_erase"))
    reapply = actions.add_parser("reapply", help="destroy again the keys of every erased patient "
                                 "(after restoring the key store from a backup)")
    reapply.set_defaults(run=_lazy("interfaces.cli.gdpr", "run_reapply"))


def settings() -> Settings:
    return Settings.from_env()


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """Import a command's module only when it runs (``clinic token`` needs no web server)."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(module), name)(args)

    return run


def _role_prefix(text: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", text):
        raise argparse.ArgumentTypeError("lower-case letters, digits and _, starting with a letter")
    return text


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be above 0")
    return value


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {text!r}") from None


def _aware_datetime(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give a timezone, e.g. 2027-01-05T09:00:00+00:00")
    return moment


if __name__ == "__main__":
    sys.exit(main())
