"""The rendered manifests' commands, run for real: the consultations API Deployment's arguments and the
migration Job's, with the rendered ConfigMap as their environment (only the addresses of PostgreSQL,
RabbitMQ and Redis, the ports and the secrets' stand-ins are replaced by this machine's).

It shows the migration ordering's last layer (docs/deployment.md): an API started before
``clinic db migrate`` waits without listening; once the Job's command has run it turns ready on the
probe paths of its manifest; on SIGTERM readiness says 503 while liveness still answers (the drain),
then it exits 0.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from application.bootstrap import database_roles_of
from infrastructure.database_roles import drop
from infrastructure.tls import create_dev_pki
from tests import services
from tests.kit import eventually

ROOT = Path(__file__).resolve().parents[2]
CLINIC = [sys.executable, "-m", "interfaces.cli.main"]


def rendered(overlay: str) -> list[dict[str, Any]]:
    kubectl = services.require_tool("kubectl", "install kubectl (v1.27+, kustomize v5 built in) on PATH")
    result = subprocess.run([kubectl, "kustomize", str(ROOT / "deployment" / "k8s" / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=120, check=True)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def pick(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"].startswith(name))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def until(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    return eventually(condition, timeout, what)


def with_local_servers(args: list[str], port: int) -> list[str]:
    """The container's arguments, listening on a free loopback port instead of 0.0.0.0:8000."""
    args = list(args)
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--port") + 1] = str(port)
    return args


@pytest.fixture
def environment(tmp_path):
    services.require_postgres()
    services.require_redis()
    import psycopg

    docs = rendered("dev")
    config = pick(docs, "ConfigMap", "clinic-config")["data"]
    schema, prefix = f"k8s_{uuid.uuid4().hex[:10]}", f"k8s{uuid.uuid4().hex[:8]}"
    kek = tmp_path / "kek"  # as the Secret clinic-data-kek is mounted
    kek.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode())
    kek.chmod(0o600)
    ca = create_dev_pki(tmp_path / "pki").ca_file  # as the Secret clinic-pki's ca.pem is mounted
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CLINIC_", "POSTGRES_"))}
    env |= config | {
        "POSTGRES_HOST": services.POSTGRES_HOST, "POSTGRES_PORT": str(services.POSTGRES_PORT),
        "POSTGRES_DBNAME": services.POSTGRES_DB, "POSTGRES_USER": services.POSTGRES_USER, "POSTGRES_PASSWORD": "",
        "POSTGRES_SCHEMA": schema, "CLINIC_AMQP_URL": services.amqp_url(), "CLINIC_AMQP_PREFIX": prefix,
        "CLINIC_REDIS_URL": services.redis_url(), "CLINIC_REDIS_PREFIX": f"{prefix}:views:",
        "CLINIC_DATA_DIR": str(tmp_path / "data"), "CLINIC_DATA_KEK_FILE": str(kek), "CLINIC_AUTH_CA_FILE": str(ca),
        "CLINIC_DRAIN_SECONDS": "2",  # 10 in the ConfigMap; shorter here, same behaviour
    }
    env.pop("CLINIC_OTLP_ENDPOINT")  # no collector here
    dsn = (f"host={services.POSTGRES_HOST} port={services.POSTGRES_PORT} dbname={services.POSTGRES_DB} "
           f"user={services.POSTGRES_USER}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield docs, env
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cursor:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            drop(cursor, database_roles_of(prefix).values())
        import redis

        client = redis.Redis.from_url(services.redis_url())
        keys = list(client.scan_iter(match=f"{prefix}:views:*", count=1000))
        if keys:
            client.unlink(*keys)
        client.close()


def test_api_waits_for_the_migration_job_then_serves_its_probes_and_drains(environment, tmp_path):
    docs, env = environment
    api = pick(docs, "Deployment", "clinic-consultations-api")["spec"]["template"]["spec"]["containers"][0]
    job = pick(docs, "Job", "clinic-migrate")["spec"]["template"]["spec"]["containers"][0]
    live, ready = api["livenessProbe"]["httpGet"]["path"], api["readinessProbe"]["httpGet"]["path"]
    assert api["startupProbe"]["httpGet"]["path"] == live
    port, log = free_port(), tmp_path / "api.log"
    with log.open("w") as output:
        process = subprocess.Popen([*CLINIC, *with_local_servers(api["args"], port)], cwd=ROOT, env=env,
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        until(lambda: "clinic db migrate" in log.read_text(), "the API to say it waits for the migration")
        assert process.poll() is None and status(port, live) == 0  # alive, not listening: startup probe fails

        args = job["args"]  # its roles named for this test (roles are the server's, not the schema's)
        args[args.index("--roles") + 1] = env["CLINIC_AMQP_PREFIX"]
        migrate = subprocess.run([*CLINIC, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr

        until(lambda: status(port, ready) == 200, "readiness after the migration", timeout=60)
        assert status(port, live) == 200
        metrics = pick(docs, "Deployment", "clinic-consultations-api")["spec"]["template"]["metadata"]["annotations"]
        assert status(port, metrics["prometheus.io/path"]) == 200

        process.terminate()
        until(lambda: status(port, ready) == 503, "readiness 503 while draining", timeout=5)
        assert status(port, live) == 200  # still serving: the endpoints drop it before the port closes
        assert process.wait(timeout=30) == 0, log.read_text()[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
