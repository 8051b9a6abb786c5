"""The product as users run it: the ``clinic`` command in separate processes, over real HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit import eventually

CLINIC = [sys.executable, "-m", "interfaces.cli.main"]
ROOT = Path(__file__).resolve().parents[2]


def run_clinic(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLINIC, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_demo_prints_every_outcome():
    result = run_clinic("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    for outcome in ["('CONFIRMED', None)", "('REJECTED', 'slot_unavailable')", "('REJECTED', 'doctor_inactive')",
                    "slot history: ['Opened', 'Held', 'Released']", "('CANCELLED', None)", "starts: 10:00",
                    "slots at 09:00 and 10:00: ('OPEN', 'BOOKED')", "reschedule saga: COMPLETED",
                    "Ana's app was told (signatures verified): ['consultation.confirmed', 'consultation.rescheduled']",
                    "status at version 1: REQUESTED", "all outcomes as expected"]:
        assert outcome in result.stdout


def test_cli_rejects_bad_input_with_a_clear_message_and_non_zero_exit(tmp_path):
    env = {"CLINIC_DATA_DIR": str(tmp_path)}
    bad_role = run_clinic("token", "--sub", "x", "--role", "ROOT", env=env)
    assert bad_role.returncode == 2 and "invalid choice: 'ROOT'" in bad_role.stderr
    naive = run_clinic("audit", "consultation", "00000000-0000-0000-0000-000000000001", "--as-of",
                       "2027-01-01T00:00:00", env=env)
    assert naive.returncode == 2 and "give a timezone" in naive.stderr
    unmigrated = run_clinic("audit", "consultation", "00000000-0000-0000-0000-000000000001", env=env)
    assert unmigrated.returncode == 1 and "run `clinic db migrate`" in unmigrated.stderr
    assert run_clinic("db", "migrate", env=env).returncode == 0
    unknown = run_clinic("audit", "consultation", "00000000-0000-0000-0000-000000000001", env=env)
    assert unknown.returncode == 1 and "not found" in unknown.stderr
    bad_setting = run_clinic("db", "migrate", env={**env, "CLINIC_PERSISTENCE": "oracle"})
    assert bad_setting.returncode == 1 and "CLINIC_PERSISTENCE must be one of" in bad_setting.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[str, dict[str, str]]]:
    """``clinic serve`` in its own process, on a free port, with its own data directory."""
    env = {**os.environ, "CLINIC_DATA_DIR": str(tmp_path), "CLINIC_RUNNER_TICK_SECONDS": "0.05"}
    port = _free_port()
    process = subprocess.Popen([*CLINIC, "serve", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=open(tmp_path / "serve.log", "w"), stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_live(base, process)
        yield base, env
    finally:
        process.terminate()
        process.wait(timeout=15)


def _wait_until_live(base: str, process: subprocess.Popen, timeout: float = 30) -> None:
    def live() -> bool:
        if process.poll() is not None:
            raise AssertionError("clinic serve exited (see serve.log in the test's tmp_path)")
        try:
            with urllib.request.urlopen(f"{base}/health/live", timeout=1):
                return True
        except OSError:
            return False  # the port is not bound yet

    eventually(live, timeout, what="clinic serve to become live", interval=0.1)


def call(base: str, method: str, path: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"{base}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_served_api_books_with_tokens_from_the_cli(served):
    base, env = served
    admin = run_clinic("token", "--sub", "ops-1", "--role", "ADMIN", env=env).stdout.strip()
    status, patient = call(base, "POST", "/v1/patients", admin,
                           {"name": "Ana", "email": "ana@example.org", "birth_date": "1990-01-01", "consent": True})
    assert status == 201
    _, doctor = call(base, "POST", "/v1/doctors", admin, {"name": "Dr. Reis", "specialty": "cardiology"})
    start = "2027-01-04T09:00:00+00:00"
    assert call(base, "POST", f"/v1/doctors/{doctor['doctor_id']}/slots", admin,
                {"slots": [{"start": start, "duration_minutes": 30}]})[0] == 201
    patient_token = run_clinic("token", "--sub", patient["patient_id"], "--role", "PATIENT", env=env).stdout.strip()
    status, accepted = call(base, "POST", "/v1/consultations", patient_token,
                            {"patient_id": patient["patient_id"], "doctor_id": doctor["doctor_id"],
                             "start": start, "reason": "check-up"})
    assert status == 202
    assert _poll_status(base, accepted["consultation_id"], patient_token) == "CONFIRMED"


def _poll_status(base: str, consultation_id: str, token: str, timeout: float = 20) -> str:
    """A client of the 202 API that polls the resource until the saga has decided."""

    def decided() -> str | None:
        status = call(base, "GET", f"/v1/consultations/{consultation_id}", token)[1]["status"]
        return None if status == "REQUESTED" else status

    return eventually(decided, timeout, what=f"consultation {consultation_id} to be decided")
