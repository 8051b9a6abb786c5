"""The real nginx gateway routes each part of /v1 to its context's service and sets correlation ids.

Four uvicorn servers each mount only one context's routes (as the services of
distributed mode do) over one embedded clinic; nginx runs with the rendered config.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from joserfc.jwk import ECKey

from application.bootstrap import bootstrap
from application.settings import Settings
from infrastructure.security.tokens import TokenIssuer
from interfaces.gateway import SERVICES, Gateway
from interfaces.http.app import create_app
from interfaces.http.contexts import SERVICE_CONTROLLERS
from tests import services

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # a port not bound yet: nothing to wait on but time
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[str, TokenIssuer]]:
    nginx = services.require_binary("nginx")
    issuer = TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), "clinic-dev", "clinic-api")
    clinic = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05))
    servers, ports = [], {}
    for name in SERVICES:
        ports[name] = free_port()
        app = create_app(clinic, issuer.verifier(), controllers=SERVICE_CONTROLLERS[name])
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=ports[name], log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        servers.append(server)
    runtime = tmp_path_factory.mktemp("gateway")
    gateway_port = free_port()
    config = Gateway(f"127.0.0.1:{gateway_port}", {n: [f"127.0.0.1:{p}"] for n, p in ports.items()},
                     runtime, ROOT / "specs" / "openapi.json", ROOT / "docs" / "deprecation.md").write(runtime / "nginx.conf")
    process = subprocess.Popen([nginx, "-e", str(runtime / "error.log"), "-p", str(runtime), "-c", str(config)])
    try:
        for port in [*ports.values(), gateway_port]:
            wait_for_port(port)
        yield f"http://127.0.0.1:{gateway_port}", issuer
    finally:
        process.terminate()
        process.wait(timeout=10)
        for server in servers:
            server.should_exit = True
        clinic.close()


def call(url: str, token: str | None = None, body: dict | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     method="POST" if body is not None else "GET",
                                     headers={"Content-Type": "application/json", **(headers or {}),
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, json.loads(error.read())


def test_each_path_reaches_its_contexts_service_and_a_booking_is_confirmed(stack):
    base, issuer = stack
    admin = issuer.issue("ops-1", ["ADMIN"])
    _, _, patient = call(f"{base}/v1/patients", admin,
                         {"name": "Ana", "email": "ana@example.org", "birth_date": "1990-01-01", "consent": True})
    _, _, doctor = call(f"{base}/v1/doctors", admin, {"name": "Dr. Reis", "specialty": "cardiology"})
    start = "2027-01-04T09:00:00+00:00"
    status, _, _ = call(f"{base}/v1/doctors/{doctor['doctor_id']}/slots", admin,
                        {"slots": [{"start": start, "duration_minutes": 30}]})
    assert status == 201
    status, _, accepted = call(f"{base}/v1/consultations", admin,
                               {"patient_id": patient["patient_id"], "doctor_id": doctor["doctor_id"],
                                "start": start, "reason": "check-up"})
    assert status == 202
    status, _, saga = call(f"{base}/v1/sagas/{accepted['saga_id']}", admin)
    assert status == 200 and saga["consultation_id"] == accepted["consultation_id"]
    for kind, key in [("patient", patient["patient_id"]), ("consultation", accepted["consultation_id"]),
                      ("saga", accepted["saga_id"])]:
        assert call(f"{base}/v1/audit/{kind}/{key}", admin)[0] == 200


def test_the_gateway_sets_a_correlation_id_when_the_client_sent_none(stack):
    base, issuer = stack
    _, headers, _ = call(f"{base}/v1/patients", issuer.issue("ops-1", ["ADMIN"]),
                         {"name": "Rui", "email": "rui@example.org", "birth_date": "1980-01-01", "consent": True})
    generated = headers["x-correlation-id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    _, headers, _ = call(f"{base}/v1/sagas/00000000-0000-0000-0000-000000000000",
                         issuer.issue("ops-1", ["ADMIN"]), headers={"X-Correlation-Id": "given-1"})
    assert headers["x-correlation-id"] == "given-1"


def test_the_gateway_serves_liveness_the_spec_and_a_problem_for_unknown_paths(stack):
    base, _ = stack
    assert call(f"{base}/health/live")[0] == 200
    status, _, spec = call(f"{base}/schema/openapi.json")
    assert status == 200 and "/v1/consultations" in spec["paths"]
    status, headers, problem = call(f"{base}/v2/nowhere")
    assert (status, problem["type"]) == (404, "urn:clinic:problem:not-found")
    assert headers["x-correlation-id"]


def test_the_deprecated_v1_read_and_its_v2_successor_both_route_and_the_guide_is_served(stack):
    base, issuer = stack
    admin = issuer.issue("ops-1", ["ADMIN"])
    missing = "0b7e3d1c-5a2f-4c6e-9d8b-7a1f2e3c4d5e"
    v1_status, v1_headers, v1 = call(f"{base}/v1/consultations/{missing}", admin)
    v2_status, v2_headers, v2 = call(f"{base}/v2/consultations/{missing}", admin)
    assert (v1_status, v2_status) == (404, 404)
    # the consultations service's problems (nginx's own 404 has no instance), v1's with the deprecation headers
    assert (v1["instance"], v2["instance"]) == (f"/v1/consultations/{missing}", f"/v2/consultations/{missing}")
    assert "deprecation" in v1_headers and "deprecation" not in v2_headers
    guide = v1_headers["link"].split(">", 1)[0].lstrip("<").split("#", 1)[0]
    with urllib.request.urlopen(base + guide, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/markdown")
        assert response.read() == (ROOT / "docs" / "deprecation.md").read_bytes()


def test_a_service_with_no_replica_answering_is_the_apis_503_problem_with_retry_after(tmp_path):
    nginx = services.require_binary("nginx")
    gateway_port, nobody = free_port(), free_port()  # nothing listens on ``nobody``
    config = Gateway(f"127.0.0.1:{gateway_port}", {name: [f"127.0.0.1:{nobody}"] for name in SERVICES},
                     tmp_path, ROOT / "specs" / "openapi.json").write(tmp_path / "nginx.conf")
    process = subprocess.Popen([nginx, "-e", str(tmp_path / "error.log"), "-p", str(tmp_path), "-c", str(config)])
    try:
        wait_for_port(gateway_port)
        status, headers, problem = call(f"http://127.0.0.1:{gateway_port}/v1/sagas/{uuid.uuid4()}",
                                        headers={"X-Correlation-Id": "outage-1"})
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert (status, problem["type"], problem["status"]) == (503, "urn:clinic:problem:unavailable", 503)
    assert headers["retry-after"] == "5" and headers["x-correlation-id"] == "outage-1"
    assert headers["content-type"] == "application/problem+json"


def test_a_burst_over_the_rate_limit_is_answered_429_with_retry_after_and_other_tokens_still_pass(tmp_path):
    nginx = services.require_binary("nginx")
    gateway_port, nobody = free_port(), free_port()
    config = Gateway(f"127.0.0.1:{gateway_port}", {name: [f"127.0.0.1:{nobody}"] for name in SERVICES},
                     tmp_path, ROOT / "specs" / "openapi.json", per_address=1000, per_token=1).write(
        tmp_path / "nginx.conf")
    process = subprocess.Popen([nginx, "-e", str(tmp_path / "error.log"), "-p", str(tmp_path), "-c", str(config)])
    try:
        wait_for_port(gateway_port)
        url = f"http://127.0.0.1:{gateway_port}/v1/sagas/{uuid.uuid4()}"
        burst = [call(url, headers={"Authorization": "Bearer one"}) for _ in range(6)]  # rate 1/s, burst 2
        other = call(url, headers={"Authorization": "Bearer two"})
    finally:
        process.terminate()
        process.wait(timeout=10)
    limited = [(headers, problem) for status, headers, problem in burst if status == 429]
    assert limited, [status for status, _, _ in burst]
    headers, problem = limited[0]
    assert (problem["type"], problem["status"]) == ("urn:clinic:problem:too-many-requests", 429)
    assert headers["retry-after"] == "1" and headers["content-type"] == "application/problem+json"
    assert other[0] == 503  # another token is not limited (no service behind: the outage problem)
