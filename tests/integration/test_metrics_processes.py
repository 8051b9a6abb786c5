"""``/metrics`` of real processes: ``clinic serve`` and ``clinic run auth`` in the Prometheus text format,
and several processes writing into one ``PROMETHEUS_MULTIPROC_DIR``, aggregated by any of them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.kit import eventually

CLINIC = [sys.executable, "-m", "interfaces.cli.main"]
ROOT = Path(__file__).resolve().parents[2]
FAMILIES = {
    "clinic_http_requests", "clinic_http_request_duration_seconds", "clinic_amqp_published",
    "clinic_amqp_consumed", "clinic_amqp_acked", "clinic_amqp_retried", "clinic_amqp_dead_lettered",
    "clinic_amqp_queue_depth", "clinic_sagas_started", "clinic_sagas_confirmed", "clinic_sagas_compensated",
    "clinic_sagas_timed_out", "clinic_saga_duration_seconds", "clinic_circuit_breaker_state",
    "clinic_circuit_breaker_transitions", "clinic_projection_position", "clinic_projection_lag_events",
    "clinic_projection_lag_seconds", "clinic_event_store_append_duration_seconds",
    "clinic_event_store_appended_events", "clinic_deprecated_api_requests",
}
"""Every family of docs/observability-metrics.md (counters without their ``_total``)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running(*args: str, env: dict[str, str], log: Path, port: int | None = None) -> Iterator[str]:
    """``clinic <args> --port <port or a free one>`` in its own process until the block ends; yields its URL."""
    port = port or _free_port()
    with open(log, "w") as output:
        process = subprocess.Popen([*CLINIC, *args, "--port", str(port)], cwd=ROOT, env={**os.environ, **env},
                                   stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_live(base, process, log)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)


def _wait_until_live(base: str, process: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    def live() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the process exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base}/health/live", timeout=1):
                return True
        except (urllib.error.URLError, ConnectionError):
            return False

    try:
        eventually(live, timeout, what="the process to be live")
    except AssertionError as error:
        raise AssertionError(f"{error}: {log.read_text()[-2000:]}") from None


def ready_requests(families: dict[str, object]) -> float:
    return value(families, "clinic_http_requests", "clinic_http_requests_total", service="clinic",
                 route="/health/ready", status="200")


def scrape(base: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return {family.name: family for family in text_string_to_metric_families(response.read().decode())}


def value(families: dict, name: str, sample: str, **labels: str) -> float:
    return sum(s.value for s in families[name].samples
               if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()))


def admin_token(env: dict[str, str]) -> str:
    result = subprocess.run([*CLINIC, "token", "--sub", "ops-1", "--role", "ADMIN"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_clinic_serve_exports_every_family_after_one_request(tmp_path):
    env = {"CLINIC_DATA_DIR": str(tmp_path / "data"), "CLINIC_RUNNER_TICK_SECONDS": "0.05"}
    with running("serve", env=env, log=tmp_path / "serve.log") as base:
        request = urllib.request.Request(f"{base}/v1/doctors", method="POST",
                                         data=json.dumps({"name": "Dr Rui", "specialty": "gp"}).encode(),
                                         headers={"Authorization": f"Bearer {admin_token(env)}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 201
        deprecated = urllib.request.Request(f"{base}/v1/consultations/0b7e3d1c-5a2f-4c6e-9d8b-7a1f2e3c4d5e",
                                            headers=request.headers)
        with pytest.raises(urllib.error.HTTPError) as refused:  # no such consultation, but a deprecated operation
            urllib.request.urlopen(deprecated, timeout=5)
        assert refused.value.code == 404 and refused.value.headers["Deprecation"]
        families = scrape(base)

    assert FAMILIES <= set(families)
    assert value(families, "clinic_http_requests", "clinic_http_requests_total", service="clinic", method="POST",
                 route="/v1/doctors", status="201") == 1
    assert value(families, "clinic_http_request_duration_seconds", "clinic_http_request_duration_seconds_count",
                 route="/v1/doctors") == 1
    assert value(families, "clinic_event_store_appended_events", "clinic_event_store_appended_events_total",
                 application="registry") == 1
    assert value(families, "clinic_sagas_started", "clinic_sagas_started_total", service="clinic") == 0
    assert value(families, "clinic_deprecated_api_requests", "clinic_deprecated_api_requests_total", service="clinic",
                 operation="getConsultation", client_id="clinic-cli") == 1  # `clinic token`'s client


def test_clinic_run_auth_serves_its_http_metrics(tmp_path):
    port = _free_port()
    env = {"CLINIC_DATA_DIR": str(tmp_path / "data"), "CLINIC_JWT_ISSUER": f"http://127.0.0.1:{port}"}
    with running("run", "auth", env=env, log=tmp_path / "auth.log", port=port) as base:
        urllib.request.urlopen(f"{base}/.well-known/jwks.json", timeout=5).close()
        families = scrape(base)
    assert value(families, "clinic_http_requests", "clinic_http_requests_total", service="auth",
                 route="/.well-known/jwks.json", status="200") == 1


def test_processes_sharing_a_multiprocess_directory_are_aggregated_by_each(tmp_path):
    shared = tmp_path / "prometheus"
    shared.mkdir()
    common = {"CLINIC_RUNNER_TICK_SECONDS": "0.05", "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    with running("serve", env={**common, "CLINIC_DATA_DIR": str(tmp_path / "a")}, log=tmp_path / "a.log") as a, \
            running("serve", env={**common, "CLINIC_DATA_DIR": str(tmp_path / "b")}, log=tmp_path / "b.log") as b:
        for base, times in ((a, 2), (b, 3)):
            for _ in range(times):
                urllib.request.urlopen(f"{base}/health/ready", timeout=5).close()
        # a request is counted once its response is sent, so the last one may be counted just after the client read it
        eventually(lambda: ready_requests(scrape(a)) == 5, what="the fifth request to be counted")
        from_a, from_b = scrape(a), scrape(b)

    assert len(list(shared.glob("counter_*.db"))) == 2  # one file per process
    for families in (from_a, from_b):  # either process answers for both
        assert ready_requests(families) == 5
        assert "clinic_projection_lag_seconds" in families
