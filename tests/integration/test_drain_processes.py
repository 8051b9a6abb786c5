"""The drain of the real processes that had none before issue 8's follow-up: ``clinic run auth`` as its
Kubernetes Deployment starts it, and ``clinic serve``. On SIGTERM ``/health/ready`` says 503 while other
routes still answer, for ``CLINIC_DRAIN_SECONDS``, then the process exits 0 (the API's own:
tests/integration/test_k8s_commands.py)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from infrastructure.tls import ca_trust, create_dev_pki
from tests.integration.test_k8s_commands import (
    CLINIC,
    ROOT,
    free_port,
    pick,
    rendered,
    status,
    until,
    with_local_servers,
)

DRAIN = 2.0
"""Seconds of drain in these processes (10 in the ConfigMap; shorter here, same behaviour)."""


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as output:
        return subprocess.Popen([*CLINIC, *args], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)


def local_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "CLINIC_DATA_DIR": str(tmp_path / "data"), "CLINIC_DRAIN_SECONDS": str(DRAIN),
           "CLINIC_LOG_FORMAT": "console", **extra}
    env.pop("CLINIC_OTLP_ENDPOINT", None)  # no collector here
    return env


def drains(process: subprocess.Popen[bytes], port: int, ready: str, still: list[str], log: Path) -> None:
    """Ready, then SIGTERM: 503 on ``ready`` while every path in ``still`` answers 200, then exit 0 after
    at least the drain."""
    try:
        until(lambda: status(port, ready) == 200, "readiness before the signal", timeout=30)
        process.terminate()
        signalled = time.monotonic()
        until(lambda: status(port, ready) == 503, "readiness 503 while draining", timeout=DRAIN)
        assert [status(port, path) for path in still] == [200] * len(still), log.read_text()[-2000:]
        assert process.wait(timeout=15) == 0, log.read_text()[-2000:]
        assert time.monotonic() - signalled >= DRAIN  # it held the port open for the drain
        assert status(port, ready) == 0  # and closed it
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def config_map_value(docs: list[dict[str, Any]], container: dict[str, Any], name: str) -> str | None:
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            data = pick(docs, "ConfigMap", source["configMapRef"]["name"]).get("data", {})
            if name in data:
                return data[name]
    return next((var.get("value") for var in container.get("env", []) if var["name"] == name), None)


def test_the_auth_server_drains_on_sigterm_as_its_deployment_runs_it(tmp_path):
    docs = rendered("dev")
    auth = pick(docs, "Deployment", "clinic-auth")["spec"]["template"]["spec"]["containers"][0]
    assert float(config_map_value(docs, auth, "CLINIC_DRAIN_SECONDS") or 0) > 0  # the Deployment drains
    live, ready = auth["livenessProbe"]["httpGet"]["path"], auth["readinessProbe"]["httpGet"]["path"]
    port, internal, log = free_port(), free_port(), tmp_path / "auth.log"
    pki = create_dev_pki(tmp_path / "pki")  # as the Secret clinic-pki is mounted: its in-cluster HTTPS endpoint
    env = local_env(tmp_path, CLINIC_AUTH_DIR=str(tmp_path / "auth"), CLINIC_JWT_ISSUER=f"http://127.0.0.1:{port}",
                    CLINIC_PKI_DIR=str(pki.directory))
    args = with_local_servers(auth["args"], port)
    args[args.index("--internal-port") + 1] = str(internal)
    process = start(args, env, log)
    until(lambda: jwks_over_tls(internal, pki.ca_file), "the JWKS over HTTPS, verified against the CA", timeout=30)
    drains(process, port, ready, [live, "/.well-known/jwks.json"], log)


def jwks_over_tls(port: int, ca_file: Path) -> bool:
    import httpx

    try:
        return httpx.get(f"https://127.0.0.1:{port}/.well-known/jwks.json", verify=ca_trust(ca_file)).status_code == 200
    except httpx.HTTPError:
        return False


def test_clinic_serve_drains_on_sigterm(tmp_path):
    port, log = free_port(), tmp_path / "serve.log"
    process = start(["serve", "--port", str(port)], local_env(tmp_path), log)
    drains(process, port, "/health/ready", ["/health/live"], log)
