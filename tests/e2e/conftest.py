"""The HTTP API in-process: a running in-memory clinic behind a Litestar TestClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from joserfc.jwk import ECKey
from litestar.testing import TestClient

from application.bootstrap import bootstrap
from application.clinic import Clinic
from application.settings import Settings
from infrastructure.security.tokens import TokenIssuer
from interfaces.http.app import create_app

START = "2027-01-05T09:00:00Z"
PROBLEM_TYPE = "urn:clinic:problem:"
Headers = dict[str, str]


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), "clinic-dev", "clinic-api")


@pytest.fixture
def clinic() -> Iterator[Clinic]:
    clinic = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05))
    yield clinic
    clinic.close()


@pytest.fixture
def api(clinic: Clinic, issuer: TokenIssuer) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(clinic, issuer.verifier())) as client:
        yield client


@pytest.fixture
def token(issuer: TokenIssuer) -> Callable[..., Headers]:
    """``token(sub, *roles)``: the Authorization header of a valid bearer token."""

    def make(sub: Any, *roles: str) -> Headers:
        return {"Authorization": f"Bearer {issuer.issue(str(sub), roles)}"}

    return make


@pytest.fixture
def admin(token: Callable[..., Headers]) -> Headers:
    return token("ops-1", "ADMIN")


@dataclass(frozen=True)
class World:
    patient_id: str
    doctor_id: str
    slot_id: str
    start: str = START


def register_patient(api: TestClient[Any], admin: Headers, name: str = "Ana") -> str:
    body = {"name": name, "email": f"{name.lower()}@example.org", "birth_date": "1990-01-01", "consent": True}
    response = api.post("/v1/patients", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()["patient_id"]


def register_doctor(api: TestClient[Any], admin: Headers, name: str = "Dr Rui") -> str:
    response = api.post("/v1/doctors", json={"name": name, "specialty": "gp"}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()["doctor_id"]


def open_slot(api: TestClient[Any], admin: Headers, doctor_id: str, start: str = START) -> str:
    body = {"slots": [{"start": start, "duration_minutes": 30}]}
    response = api.post(f"/v1/doctors/{doctor_id}/slots", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()["slot_ids"][0]


@pytest.fixture
def world(api: TestClient[Any], admin: Headers) -> World:
    """A consenting patient, an active doctor and one open slot at ``START``."""
    doctor_id = register_doctor(api, admin)
    return World(register_patient(api, admin), doctor_id, open_slot(api, admin, doctor_id))


def book(api: TestClient[Any], headers: Headers, patient_id: str, doctor_id: str, start: str = START) -> Any:
    body = {"patient_id": patient_id, "doctor_id": doctor_id, "start": start, "reason": "check-up"}
    return api.post("/v1/consultations", json=body, headers=headers)


def assert_problem(response: Any, status: int, slug: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem with this status (and stable type); returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert problem["type"].startswith(PROBLEM_TYPE)
    if slug is not None:
        assert problem["type"] == PROBLEM_TYPE + slug
    return problem
