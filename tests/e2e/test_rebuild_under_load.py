"""A rebuild while clients read over HTTP: `clinic serve` on Redis, `clinic projections rebuild`
in another process, readers hammering the read endpoints — no failed or partial answer."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from infrastructure.read_models.redis_store import RedisViewStore
from tests import services
from tests.e2e.test_processes import _free_port, _wait_until_live, call
from tests.integration.projections.conftest import delete_prefix
from tests.kit import eventually

CLINIC = [sys.executable, "-m", "interfaces.cli.main"]
ROOT = Path(__file__).resolve().parents[2]


def clinic(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run([*CLINIC, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_rebuilding_every_projection_under_read_load_fails_no_read(tmp_path):
    services.require_redis()
    prefix = f"test:load:{uuid.uuid4().hex}:"
    env = {**os.environ, "CLINIC_DATA_DIR": str(tmp_path), "CLINIC_REDIS_URL": services.redis_url(),
           "CLINIC_REDIS_PREFIX": prefix, "CLINIC_RUNNER_TICK_SECONDS": "0.05"}
    port = _free_port()
    server = subprocess.Popen([*CLINIC, "serve", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=open(tmp_path / "serve.log", "w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_live(base, server)
        admin = clinic("token", "--sub", "ops-1", "--role", "ADMIN", env=env).strip()
        patient = call(base, "POST", "/v1/patients", admin, {"name": "Ana", "email": "a@example.org",
                                                             "birth_date": "1990-01-01", "consent": True})[1]
        doctor = call(base, "POST", "/v1/doctors", admin, {"name": "Dr", "specialty": "gp"})[1]
        starts = [f"2027-01-05T{h:02d}:00:00Z" for h in range(8, 18)]
        call(base, "POST", f"/v1/doctors/{doctor['doctor_id']}/slots", admin,
             {"slots": [{"start": s, "duration_minutes": 30} for s in starts]})
        booked = [call(base, "POST", "/v1/consultations", admin, {
            "patient_id": patient["patient_id"], "doctor_id": doctor["doctor_id"], "start": s, "reason": "x",
        })[1]["consultation_id"] for s in starts]
        paths = [f"/v1/consultations/{booked[0]}", f"/v1/patients/{patient['patient_id']}/consultations?limit=100",
                 f"/v1/doctors/{doctor['doctor_id']}/slots?date=2027-01-05"]
        failures, answers, stop = [], [], threading.Event()
        _until_complete(base, admin, paths[1:], len(starts))  # the views have caught up before the rebuilds

        def read() -> None:
            while not stop.is_set():
                for path in paths:
                    status, body = call(base, "GET", path, admin)
                    answers.append(path)
                    if status != 200 or ("items" in body and len(body["items"]) != len(starts)) or \
                            ("slots" in body and len(body["slots"]) != len(starts)):
                        failures.append((path, status, body))

        readers = [threading.Thread(target=read) for _ in range(3)]
        for reader in readers:
            reader.start()
        try:
            for name in ("consultation_detail", "patient_consultations", "doctor_slots") * 2:
                assert "serving v" in clinic("projections", "rebuild", name, env=env)
        finally:
            stop.set()
            for reader in readers:
                reader.join(timeout=30)
        assert answers and failures == []
    finally:
        server.terminate()
        server.wait(timeout=15)
        delete_prefix(RedisViewStore.from_url(services.redis_url(), prefix), prefix)


def _until_complete(base: str, token: str, paths: list[str], expected: int, timeout: float = 20) -> None:
    def caught_up() -> bool:  # the projections run in the server process: poll what it serves
        bodies = [call(base, "GET", path, token)[1] for path in paths]
        return all(len(body.get("items", body.get("slots", []))) == expected for body in bodies)

    eventually(caught_up, timeout, what="the views to catch up with the bookings")
