"""One frozen settings object, read from ``CLINIC_*`` variables and validated at start."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

PERSISTENCE_CHOICES = ("sqlite", "postgres", "sqlalchemy", "memory")
STORE_WAIT_SECONDS = 1
"""The longest one attempt waits for a pooled PostgreSQL connection (``POSTGRES_CONNECT_TIMEOUT`` overrides it;
the library's default is 30 s). With the recorders' two attempts, a request answers 503 about 2 s into an
outage instead of holding its thread for minutes."""
_NEVER_PASSED = {"POSTGRES_ENABLE_DB_FUNCTIONS"}  # lost events under concurrent writers (LIBRARY-NOTES)


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """How this process stores events, times out sagas and trusts tokens."""

    persistence: str = "sqlite"
    """``sqlite`` (default: one file per context under ``data_dir``), ``postgres``
    (eventsourcing.postgres, ``POSTGRES_*``), ``sqlalchemy`` (``SQLALCHEMY_URL``) or ``memory``."""
    data_dir: Path = Path(".clinic-data")
    """``CLINIC_DATA_DIR``: where SQLite files and the development signing key live."""
    saga_timeout: timedelta = timedelta(seconds=30)
    """``CLINIC_SAGA_DEADLINE_SECONDS``: a booking still open this long is compensated."""
    runner_tick_seconds: float = 0.5
    """``CLINIC_RUNNER_TICK_SECONDS``: how often deadlines are checked."""
    create_tables: bool = True
    """Embedded mode creates its tables at start; servers use ``clinic db migrate``."""
    jwt_issuer: str = "clinic-dev"
    """``CLINIC_JWT_ISSUER``: the ``iss`` tokens must carry."""
    jwt_audience: str = "clinic-api"
    """``CLINIC_JWT_AUDIENCE``: the ``aud`` tokens must carry."""
    database: Mapping[str, str] = field(default_factory=dict)
    """``POSTGRES_*`` or ``SQLALCHEMY_*`` passed through to the event stores."""
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    """``CLINIC_AMQP_URL``: the RabbitMQ broker of distributed mode."""
    amqp_prefix: str = "clinic"
    """``CLINIC_AMQP_PREFIX``: names this deployment's exchange and queues (``<prefix>.events``)."""
    group_commit: bool = True
    """``CLINIC_GROUP_COMMIT``: ``on`` (default) records the saves of concurrent commands to one context in
    shared transactions (``application/group_commit.py``; 0.89-0.93× the CPU per distributed booking,
    docs/performance.md); ``off``: one transaction per save."""
    amqp_declare: str = "system"
    """``CLINIC_AMQP_DECLARE``: ``system`` (a worker declares the exchange and every follower's queues: one
    broker user for all, development) or ``own`` (only its own queues: each service has its own broker
    user, and ``clinic broker setup`` declares the rest first; docs/security.md)."""
    amqp_bindings: str = "handled"
    """``CLINIC_AMQP_BINDINGS``: ``handled`` (each follower's queue binds only the events its policy handles)
    or ``all`` (``<leader>.#``: every event of each leader it follows, the ones it ignores too)."""
    partitions: int = 1
    """``CLINIC_PARTITIONS``: queues each follower's events are split into (by saga, else aggregate), each
    consumed by one worker at a time, in order; above 1 it needs RabbitMQ's consistent-hash exchange plugin."""
    workers: int = 1
    """``CLINIC_WORKERS``: how many workers each context runs (its partitions are shared among them; one of
    them, chosen by an advisory lock, relays and runs the saga timer)."""
    registry_url: str = "https://127.0.0.1:8443"
    """``CLINIC_REGISTRY_URL``: the registry service's internal mTLS endpoint."""
    registry_breaker_reset_seconds: float = 15.0
    """``CLINIC_REGISTRY_BREAKER_RESET_SECONDS``: how long the registry circuit stays open before a trial."""
    redis_url: str | None = None
    """``CLINIC_REDIS_URL``: the read models' Redis (unset in embedded mode: an in-process store)."""
    redis_prefix: str = "clinic:views:"
    """``CLINIC_REDIS_PREFIX``: the read models' keys start with this."""
    redis_ca_file: Path | None = None
    """``CLINIC_REDIS_CA_FILE``: with a ``rediss://`` URL, trust only this CA for the Redis server."""
    redis_cert_file: Path | None = None
    """``CLINIC_REDIS_CERT_FILE`` (+ ``CLINIC_REDIS_KEY_FILE``): the client certificate shown to Redis."""
    redis_key_file: Path | None = None
    amqp_ca_file: Path | None = None
    """``CLINIC_AMQP_CA_FILE``: with an ``amqps://`` URL, trust only this CA for the broker."""
    amqp_cert_file: Path | None = None
    """``CLINIC_AMQP_CERT_FILE`` (+ ``CLINIC_AMQP_KEY_FILE``): the client certificate shown to the broker."""
    amqp_key_file: Path | None = None
    pki_dir: Path | None = None
    """``CLINIC_PKI_DIR``: CA and service certificates (default ``<data_dir>/pki``; ``clinic certs init``)."""
    jwks_url: str | None = None
    """``CLINIC_JWKS_URL``: the issuer's JWKS (unset: discovered when ``CLINIC_JWT_ISSUER`` is an
    http(s) URL, else the local development key)."""
    jwt_leeway_seconds: int = 30
    """``CLINIC_JWT_LEEWAY_SECONDS``: clock skew tolerated on ``exp`` and ``nbf``."""
    jwt_roles_claim: str = "roles"
    """``CLINIC_JWT_ROLES_CLAIM``: where tokens carry roles (Keycloak: ``realm_access.roles``)."""
    oauth_token_url: str | None = None
    """``CLINIC_OAUTH_TOKEN_URL``: the token endpoint this service gets its own client-credentials
    token from (unset: a service token signed with the local development key)."""
    auth_ca_file: Path | None = None
    """``CLINIC_AUTH_CA_FILE``: trust only this CA for ``https://`` at ``CLINIC_JWKS_URL`` and
    ``CLINIC_OAUTH_TOKEN_URL`` (the authorization server's in-cluster endpoint); unset: the system's CAs."""
    client_id: str | None = None
    """``CLINIC_CLIENT_ID``: this service's OAuth2 client id (default: the service's name)."""
    client_secret: str | None = field(default=None, repr=False)
    """``CLINIC_CLIENT_SECRET`` or ``CLINIC_CLIENT_SECRET_FILE`` (a mounted secret): never logged."""
    access_token_ttl_seconds: int = 300
    """``CLINIC_AUTH_TOKEN_TTL_SECONDS``: lifetime of the access tokens the authorization server issues."""
    max_request_bytes: int = 65536
    """``CLINIC_MAX_REQUEST_BYTES``: a larger request body is refused with 413."""
    data_kek: str | None = field(default=None, repr=False)
    """``CLINIC_DATA_KEK`` or ``CLINIC_DATA_KEK_FILE``: the key-encryption key wrapping every patient's data
    key (32 bytes, URL-safe base64); unset: a development one generated into ``data_dir``. Never logged."""
    data_key_cache_seconds: float = 5.0
    """``CLINIC_DATA_KEY_CACHE_SECONDS``: how long a process keeps a patient's unwrapped data key (0: never);
    after an erasure elsewhere, this process may read that patient's data for at most this long."""
    webhook_key: str | None = field(default=None, repr=False)
    """``CLINIC_WEBHOOK_KEY`` or ``CLINIC_WEBHOOK_KEY_FILE``: the key every webhook subscription's signing
    secret is derived from (32 bytes, URL-safe base64); unset: a development one generated into ``data_dir``.
    Replacing it changes every subscription's secret. Never logged."""
    webhook_allow_http: bool = False
    """``CLINIC_WEBHOOK_ALLOW_HTTP``: ``on`` lets a subscription name a plain-http URL (development only)."""
    webhook_allow_private_networks: bool = False
    """``CLINIC_WEBHOOK_ALLOW_PRIVATE_NETWORKS``: ``on`` lets deliveries go to loopback and private addresses
    (development and tests); off, such a destination is refused at every attempt (no requests into the cluster)."""
    webhook_retry_seconds: float = 10.0
    """``CLINIC_WEBHOOK_RETRY_SECONDS``: the delay before a failed delivery's second attempt; it doubles
    after each failure, up to two hours, and the delivery is given up after twelve attempts."""
    webhook_timeout_seconds: float = 5.0
    """``CLINIC_WEBHOOK_TIMEOUT_SECONDS``: how long an attempt waits for the client's answer."""
    auth_dir: Path | None = None
    """``CLINIC_AUTH_DIR``: the authorization server's clients, users and signing keys (default
    ``<data_dir>/auth``; files readable by their owner only, or mounted from a secret)."""
    auth_token_rate_limit: str = "60/minute"
    """``CLINIC_AUTH_TOKEN_RATE_LIMIT``: token requests allowed per client IP and per client_id."""
    auth_login_rate_limit: str = "10/minute"
    """``CLINIC_AUTH_LOGIN_RATE_LIMIT``: login attempts allowed per client IP."""
    otlp_endpoint: str | None = None
    """``CLINIC_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``: the OTLP/HTTP collector traces go to
    (``<endpoint>/v1/traces``); unset: no tracing (docs/observability-tracing.md)."""
    trace_url_template: str | None = None
    """``CLINIC_TRACE_URL_TEMPLATE``: a trace's page in the trace backend, ``{trace_id}`` in it (the console
    links each saga to it), e.g. ``https://tempo.example.org/explore?trace={trace_id}``; unset: no link."""
    console_url: str | None = None
    """``CLINIC_CONSOLE_URL``: where browsers reach the console (``clinic run console``), e.g.
    ``https://clinic.example.org``: its sign-in comes back to ``<url>/console/callback``."""
    console_api_url: str | None = None
    """``CLINIC_CONSOLE_API_URL``: where ``clinic run console`` reads sagas and streams through the API (default:
    ``CLINIC_CONSOLE_URL``, the gateway); with ``{service}`` in it (``http://clinic-{service}-api``), straight
    to the service the gateway would route each request to."""
    console_client_id: str = "clinic-console"
    """``CLINIC_CONSOLE_CLIENT_ID``: the console's public OAuth2 client at the authorization server."""
    deployment_environment: str = "development"
    """``CLINIC_ENVIRONMENT``: the ``deployment.environment`` of this process's spans."""
    drain_seconds: float = 0.0
    """``CLINIC_DRAIN_SECONDS``: after SIGTERM, how long an API process keeps serving while its readiness
    says 503, so load balancers stop sending before it closes its port (0: close at once; Kubernetes: 10)."""
    log_level: str = "INFO"
    """``CLINIC_LOG_LEVEL``: the lowest level logged (DEBUG, INFO, WARNING, ERROR)."""
    log_format: str = "json"
    """``CLINIC_LOG_FORMAT``: ``json`` (one object per line, for log shippers) or ``console`` (for people)."""
    access_log: bool = False
    """``CLINIC_ACCESS_LOG``: ``on`` writes uvicorn's line per request on the public API servers; ``off``
    (default): the gateway logs every request, metrics and traces count them (docs/observability-logs.md)."""
    trusted_proxies: tuple[str, ...] = ()
    """``CLINIC_TRUSTED_PROXIES``: the addresses or networks (comma-separated) of the proxies whose
    ``X-Forwarded-For`` names the client (the gateway, the Ingress controller); none by default: the
    client is the peer, whatever a request claims (the per-address rate limits key on it)."""

    @property
    def proxy_options(self) -> dict[str, Any]:
        """uvicorn's options for ``trusted_proxies``: forwarded headers read only from them."""
        if not self.trusted_proxies:
            return {"proxy_headers": False}
        return {"proxy_headers": True, "forwarded_allow_ips": list(self.trusted_proxies)}

    @property
    def pki(self) -> Path:
        return self.pki_dir or self.data_dir / "pki"

    @property
    def redis_tls(self) -> dict[str, Path | None]:
        """``ca_file``, ``cert_file``, ``key_file`` for ``RedisViewStore.from_url`` (a ``rediss://`` URL)."""
        return {"ca_file": self.redis_ca_file, "cert_file": self.redis_cert_file, "key_file": self.redis_key_file}

    @property
    def auth(self) -> Path:
        return self.auth_dir or self.data_dir / "auth"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        persistence = env.get("CLINIC_PERSISTENCE", "sqlite").lower()
        if persistence not in PERSISTENCE_CHOICES:
            raise SettingsError(f"CLINIC_PERSISTENCE must be one of {', '.join(PERSISTENCE_CHOICES)}")
        if persistence == "sqlalchemy" and not env.get("SQLALCHEMY_URL"):
            raise SettingsError("CLINIC_PERSISTENCE=sqlalchemy needs SQLALCHEMY_URL")
        if persistence == "postgres" and not env.get("POSTGRES_DBNAME"):
            raise SettingsError("CLINIC_PERSISTENCE=postgres needs POSTGRES_DBNAME (and POSTGRES_HOST, ...)")
        return cls(
            persistence=persistence,
            data_dir=Path(env.get("CLINIC_DATA_DIR", ".clinic-data")),
            saga_timeout=timedelta(seconds=_number(env, "CLINIC_SAGA_DEADLINE_SECONDS", 30)),
            runner_tick_seconds=_number(env, "CLINIC_RUNNER_TICK_SECONDS", 0.5),
            create_tables=persistence in ("sqlite", "memory"),
            jwt_issuer=env.get("CLINIC_JWT_ISSUER", "clinic-dev"),
            jwt_audience=env.get("CLINIC_JWT_AUDIENCE", "clinic-api"),
            database={k: v for k, v in env.items()
                      if k.startswith(("POSTGRES_", "SQLALCHEMY_")) and k not in _NEVER_PASSED},
            amqp_url=env.get("CLINIC_AMQP_URL", cls.amqp_url),
            amqp_prefix=env.get("CLINIC_AMQP_PREFIX", cls.amqp_prefix),
            amqp_bindings=_choice(env, "CLINIC_AMQP_BINDINGS", cls.amqp_bindings, AMQP_BINDINGS),
            amqp_declare=_choice(env, "CLINIC_AMQP_DECLARE", cls.amqp_declare, AMQP_DECLARE),
            partitions=_whole(env, "CLINIC_PARTITIONS", 1),
            workers=_whole(env, "CLINIC_WORKERS", 1),
            group_commit=_choice(env, "CLINIC_GROUP_COMMIT", "on", SWITCH) == "on",
            registry_url=env.get("CLINIC_REGISTRY_URL", cls.registry_url),
            pki_dir=Path(env["CLINIC_PKI_DIR"]) if env.get("CLINIC_PKI_DIR") else None,
            redis_url=env.get("CLINIC_REDIS_URL") or None,
            redis_prefix=env.get("CLINIC_REDIS_PREFIX", cls.redis_prefix),
            **_tls_files(env, "redis", env.get("CLINIC_REDIS_URL") or "", "rediss://"),
            **_tls_files(env, "amqp", env.get("CLINIC_AMQP_URL", cls.amqp_url), "amqps://"),
            registry_breaker_reset_seconds=_number(env, "CLINIC_REGISTRY_BREAKER_RESET_SECONDS", 15),
            jwks_url=env.get("CLINIC_JWKS_URL") or None,
            jwt_leeway_seconds=int(_number(env, "CLINIC_JWT_LEEWAY_SECONDS", 30)),
            jwt_roles_claim=env.get("CLINIC_JWT_ROLES_CLAIM", cls.jwt_roles_claim),
            oauth_token_url=env.get("CLINIC_OAUTH_TOKEN_URL") or None,
            auth_ca_file=Path(env["CLINIC_AUTH_CA_FILE"]) if env.get("CLINIC_AUTH_CA_FILE") else None,
            client_id=env.get("CLINIC_CLIENT_ID") or None,
            client_secret=secret(env, "CLINIC_CLIENT_SECRET"),
            access_token_ttl_seconds=int(_number(env, "CLINIC_AUTH_TOKEN_TTL_SECONDS", 300)),
            max_request_bytes=int(_number(env, "CLINIC_MAX_REQUEST_BYTES", 65536)),
            data_kek=secret(env, "CLINIC_DATA_KEK"),
            data_key_cache_seconds=_number(env, "CLINIC_DATA_KEY_CACHE_SECONDS", 5, allow_zero=True),
            webhook_key=secret(env, "CLINIC_WEBHOOK_KEY"),
            webhook_allow_http=_choice(env, "CLINIC_WEBHOOK_ALLOW_HTTP", "off", SWITCH) == "on",
            webhook_allow_private_networks=_choice(env, "CLINIC_WEBHOOK_ALLOW_PRIVATE_NETWORKS", "off", SWITCH) == "on",
            webhook_retry_seconds=_number(env, "CLINIC_WEBHOOK_RETRY_SECONDS", 10),
            webhook_timeout_seconds=_number(env, "CLINIC_WEBHOOK_TIMEOUT_SECONDS", 5),
            auth_dir=Path(env["CLINIC_AUTH_DIR"]) if env.get("CLINIC_AUTH_DIR") else None,
            auth_token_rate_limit=env.get("CLINIC_AUTH_TOKEN_RATE_LIMIT", cls.auth_token_rate_limit),
            auth_login_rate_limit=env.get("CLINIC_AUTH_LOGIN_RATE_LIMIT", cls.auth_login_rate_limit),
            **_logging(env),
            access_log=_choice(env, "CLINIC_ACCESS_LOG", "off", SWITCH) == "on",
            trusted_proxies=_addresses(env, "CLINIC_TRUSTED_PROXIES"),
            otlp_endpoint=env.get("CLINIC_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
            deployment_environment=env.get("CLINIC_ENVIRONMENT", cls.deployment_environment),
            trace_url_template=env.get("CLINIC_TRACE_URL_TEMPLATE") or None,
            console_url=(env.get("CLINIC_CONSOLE_URL") or "").rstrip("/") or None,
            console_client_id=env.get("CLINIC_CONSOLE_CLIENT_ID") or cls.console_client_id,
            console_api_url=(env.get("CLINIC_CONSOLE_API_URL") or "").rstrip("/") or None,
            drain_seconds=_number(env, "CLINIC_DRAIN_SECONDS", 0, allow_zero=True),
        )

    def eventsourcing_env(self, app_name: str, create_table: bool | None = None,
                          cache: bool = False) -> dict[str, str]:
        """The eventsourcing library's variables for one context's application.

        ``cache``: keep the aggregates this process loaded or saved, and trust them: only for a store
        no other process writes (every save here updates the cache). Else every aggregate is loaded from
        the store (a follower's batch loads all it needs with one query)."""
        create = self.create_tables if create_table is None else create_table
        # Multi-row tracking: a follower fed by a broker may see an earlier notification
        # after a later one (a redelivery); single-row tracking would refuse it silently.
        env = {"CREATE_TABLE": "y" if create else "n", "SINGLE_ROW_TRACKING": "n"}
        if cache:
            env |= {"AGGREGATE_CACHE_MAXSIZE": str(AGGREGATE_CACHE_SIZE), "AGGREGATE_CACHE_FASTFORWARD": "n"}
        if self.persistence == "sqlite":
            env |= {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "PROCESS_RECORDER_TOPIC": BATCH_RECORDERS["sqlite"],
                    "SQLITE_DBNAME": str(self.data_dir / f"{app_name.lower()}.sqlite"),
                    "SQLITE_LOCK_TIMEOUT": "10"}
        elif self.persistence == "postgres":
            env |= {"PERSISTENCE_MODULE": "eventsourcing.postgres", "PROCESS_RECORDER_TOPIC": BATCH_RECORDERS["postgres"],
                    **FAIL_FAST_RECORDERS, "POSTGRES_CONNECT_TIMEOUT": str(STORE_WAIT_SECONDS), **self.database}
        elif self.persistence == "sqlalchemy":
            env |= {"PERSISTENCE_MODULE": "eventsourcing_sqlalchemy", **self._sqlalchemy_database()}
        else:
            env |= {"PERSISTENCE_MODULE": "eventsourcing.popo"}
        return env

    def _sqlalchemy_database(self) -> dict[str, str]:
        """``SQLALCHEMY_*`` with the schema also on the connection's search path.

        eventsourcing-sqlalchemy 1.0.1 drops ``SQLALCHEMY_SCHEMA`` for process
        applications' event tables (its tracking recorder does not pass it on), which
        would put three contexts' events in ``public``; the search path keeps every
        table in the configured schema.
        """
        database = dict(self.database)
        schema, url = database.get("SQLALCHEMY_SCHEMA"), database.get("SQLALCHEMY_URL", "")
        if schema and url.startswith("postgresql") and "search_path" not in url:
            database["SQLALCHEMY_URL"] = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
        return database


AGGREGATE_CACHE_SIZE = 10_000
"""Aggregates a context keeps in memory (``eventsourcing_env(cache=True)``): those of the bookings in flight."""
BATCH_RECORDERS = {"sqlite": "infrastructure.event_store:SQLiteBatchRecorder",
                   "postgres": "infrastructure.event_store:PostgresBatchRecorder"}
"""The process recorders that record a batch's tracking rows in its transaction and look them up exactly
(a follower fed by a broker needs both); the other stores serve in-order delivery only."""
FAIL_FAST_RECORDERS = {"APPLICATION_RECORDER_TOPIC": "infrastructure.event_store:PostgresStoreRecorder",
                       "TRACKING_RECORDER_TOPIC": "infrastructure.event_store:PostgresPositionRecorder"}
"""PostgreSQL's other recorders, trying a query twice instead of ten times (``event_store.STORE_ATTEMPTS``)."""


def secret(env: Mapping[str, str], name: str) -> str | None:
    """A secret from ``name``, or from the file ``name_FILE`` names (a mounted Kubernetes secret)."""
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as error:
            raise SettingsError(f"{name}_FILE: cannot read {path} ({error.strerror})") from None
    return env.get(name) or None


def _tls_files(env: Mapping[str, str], name: str, url: str, tls_scheme: str) -> dict[str, Path | None]:
    """``<name>_ca_file``, ``_cert_file``, ``_key_file`` from ``CLINIC_<NAME>_*_FILE``; only with a TLS URL."""
    prefix = f"CLINIC_{name.upper()}"
    ca, cert, key = (env.get(f"{prefix}_{part}_FILE") or None for part in ("CA", "CERT", "KEY"))
    if (ca or cert or key) and not url.startswith(tls_scheme):
        raise SettingsError(f"{prefix}_CA/CERT/KEY_FILE need {prefix}_URL to start with {tls_scheme}")
    if (cert is None) != (key is None):
        raise SettingsError(f"{prefix}_CERT_FILE and {prefix}_KEY_FILE go together")
    paths = (Path(value) if value else None for value in (ca, cert, key))
    return dict(zip((f"{name}_ca_file", f"{name}_cert_file", f"{name}_key_file"), paths, strict=True))


AMQP_BINDINGS = ("handled", "all")
AMQP_DECLARE = ("system", "own")
SWITCH = ("on", "off")


def _choice(env: Mapping[str, str], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(key, default).lower()
    if value not in choices:
        raise SettingsError(f"{key} must be one of {', '.join(choices)}")
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "console")


def _logging(env: Mapping[str, str]) -> dict[str, str]:
    """``log_level`` and ``log_format`` from ``CLINIC_LOG_LEVEL`` and ``CLINIC_LOG_FORMAT``, checked."""
    level, form = env.get("CLINIC_LOG_LEVEL", "INFO").upper(), env.get("CLINIC_LOG_FORMAT", "json").lower()
    if level not in LOG_LEVELS:
        raise SettingsError(f"CLINIC_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
    if form not in LOG_FORMATS:
        raise SettingsError(f"CLINIC_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
    return {"log_level": level, "log_format": form}


def _whole(env: Mapping[str, str], key: str, default: int) -> int:
    """A positive whole number from ``key``."""
    value = _number(env, key, default)
    if value != int(value):
        raise SettingsError(f"{key} must be a whole number")
    return int(value)


def _addresses(env: Mapping[str, str], key: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or networks (``10.0.0.0/8``); a malformed one names itself."""
    found = []
    for text in filter(None, (part.strip() for part in env.get(key, "").split(","))):
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise SettingsError(f"{key}: {text!r} is not an IP address or network") from None
        found.append(text)
    return tuple(found)


def _number(env: Mapping[str, str], key: str, default: float, allow_zero: bool = False) -> float:
    try:
        value = float(env.get(key, default))
    except ValueError:
        raise SettingsError(f"{key} must be a number") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise SettingsError(f"{key} must be {'zero or more' if allow_zero else 'positive'}")
    return value
