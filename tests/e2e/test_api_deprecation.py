"""GET /v1/consultations/{id} is deprecated in favour of /v2 (docs/deprecation.md): headers, metric, sunset."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from litestar.testing import TestClient

from application.clinic import Clinic
from infrastructure.observability.metrics import Metrics
from infrastructure.security.tokens import TokenIssuer
from interfaces.http.app import create_app
from interfaces.http.deprecation import DEPRECATIONS
from tests.e2e.conftest import Headers, World, assert_problem, book, register_patient

V1 = DEPRECATIONS["getConsultation"]
DEPRECATION_HEADERS = ("deprecation", "sunset", "link")


class MovableClock:
    """The app's clock, moved by the test (no waiting for a real sunset)."""

    def __init__(self) -> None:
        self.now = V1.deprecated_at + timedelta(days=1)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics("clinic")


@pytest.fixture
def api(clinic: Clinic, issuer: TokenIssuer, metrics: Metrics, clock: MovableClock) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(clinic, issuer.verifier(), metrics=metrics, clock=clock)) as client:
        yield client


def as_client(issuer: TokenIssuer, sub: str, role: str, client_id: str) -> Headers:
    return {"Authorization": f"Bearer {issuer.issue(sub, [role], client_id=client_id)}"}


def booked(api: TestClient[Any], clinic: Clinic, admin: Headers, world: World, start: str | None = None) -> str:
    response = book(api, admin, world.patient_id, world.doctor_id, **({"start": start} if start else {}))
    assert response.status_code == 202, response.text
    clinic.wait_until_settled()
    return response.json()["consultation_id"]


def assert_deprecated(response: Any, consultation_id: str) -> None:
    assert response.headers["deprecation"] == f"@{int(V1.deprecated_at.timestamp())}"
    assert parsedate_to_datetime(response.headers["sunset"]) == V1.sunset
    assert response.headers["link"] == (f'</docs/deprecation.md#getconsultation-v1-to-v2>; rel="deprecation"; '
                                        f'type="text/markdown", </v2/consultations/{consultation_id}>; '
                                        f'rel="successor-version"')


def test_v1_carries_the_deprecation_headers_and_v2_none(api, clinic, admin, world):
    consultation_id = booked(api, clinic, admin, world)
    v1 = api.get(f"/v1/consultations/{consultation_id}", headers=admin)
    v2 = api.get(f"/v2/consultations/{consultation_id}", headers=admin)
    assert (v1.status_code, v2.status_code) == (200, 200)
    assert_deprecated(v1, consultation_id)
    assert not set(DEPRECATION_HEADERS) & set(v2.headers)


def test_v1_errors_carry_the_headers_too(api, clinic, admin, world, token):
    consultation_id = booked(api, clinic, admin, world)
    missing = str(uuid.uuid4())
    assert_deprecated(assert_problem_response(api.get(f"/v1/consultations/{consultation_id}"), 401), consultation_id)
    stranger = token(register_patient(api, admin, "Bia"), "PATIENT")
    assert_deprecated(assert_problem_response(api.get(f"/v1/consultations/{consultation_id}", headers=stranger), 403),
                      consultation_id)
    assert_deprecated(assert_problem_response(api.get(f"/v1/consultations/{missing}", headers=admin), 404), missing)


def assert_problem_response(response: Any, status: int) -> Any:
    assert_problem(response, status)
    return response


def test_v2_shows_the_same_data_in_the_new_shape(api, clinic, admin, world):
    consultation_id = booked(api, clinic, admin, world)
    v1 = api.get(f"/v1/consultations/{consultation_id}", headers=admin)
    v2 = api.get(f"/v2/consultations/{consultation_id}", headers=admin)
    old, new = v1.json(), v2.json()
    assert new == {"consultation_id": old["consultation_id"], "version": int(v1.headers["etag"].strip('"')),
                   "patient_id": old["patient_id"], "doctor_id": old["doctor_id"], "start": old["start"],
                   "reason_for_visit": old["reason"], "status": {"code": "CONFIRMED"}}
    assert v2.headers["etag"] == v1.headers["etag"]


def test_v2_puts_a_rejections_reason_in_its_status(api, clinic, admin, world):
    consultation_id = booked(api, clinic, admin, world, start="2027-02-01T09:00:00Z")  # no slot open then
    old = api.get(f"/v1/consultations/{consultation_id}", headers=admin).json()
    new = api.get(f"/v2/consultations/{consultation_id}", headers=admin).json()
    assert old["status"] == "REJECTED" and old["rejection_reason"]
    assert new["status"] == {"code": "REJECTED", "reason": old["rejection_reason"]}


def test_v2s_body_version_is_what_if_match_takes(api, clinic, admin, world, token):
    consultation_id = booked(api, clinic, admin, world)
    patient = token(world.patient_id, "PATIENT")
    version = api.get(f"/v2/consultations/{consultation_id}", headers=patient).json()["version"]
    cancelled = api.post(f"/v1/consultations/{consultation_id}/cancel", json={"reason": "cannot come"},
                         headers={**patient, "If-Match": f'"{version}"'})
    assert cancelled.status_code == 200, cancelled.text


def deprecated_calls(api: TestClient[Any], client_id: str, operation: str = "getConsultation") -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith("clinic_deprecated_api_requests_total{") and f'client_id="{client_id}"' in line \
                and f'operation="{operation}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_metric_counts_v1_calls_per_client(api, clinic, admin, world, issuer):
    consultation_id = booked(api, clinic, admin, world)
    front_desk = as_client(issuer, "ops-1", "ADMIN", "front-desk")
    patient_app = as_client(issuer, world.patient_id, "PATIENT", "patient-app")
    for headers in (front_desk, front_desk, patient_app, {}):
        api.get(f"/v1/consultations/{consultation_id}", headers=headers)
    api.get(f"/v2/consultations/{consultation_id}", headers=patient_app)
    assert deprecated_calls(api, "front-desk") == 2
    assert deprecated_calls(api, "patient-app") == 1
    assert deprecated_calls(api, "anonymous") == 1
    assert deprecated_calls(api, "patient-app", operation="getConsultationV2") == 0


def test_after_the_sunset_v1_is_gone_and_v2_answers(api, clinic, admin, world, clock, issuer):
    consultation_id = booked(api, clinic, admin, world)
    clock.now = V1.sunset - timedelta(seconds=1)
    assert api.get(f"/v1/consultations/{consultation_id}", headers=admin).status_code == 200
    clock.now = V1.sunset
    gone = api.get(f"/v1/consultations/{consultation_id}", headers=as_client(issuer, "ops-1", "ADMIN", "late-app"))
    problem = assert_problem(gone, 410, "gone")
    assert f"/v2/consultations/{consultation_id}" in problem["detail"]
    assert_deprecated(gone, consultation_id)
    assert deprecated_calls(api, "late-app") == 1  # who still calls after the sunset is known too
    assert_problem(api.get(f"/v1/consultations/{consultation_id}"), 401)  # authentication still comes first
    assert api.get(f"/v2/consultations/{consultation_id}", headers=admin).status_code == 200


def test_other_operations_carry_no_deprecation_headers(api, admin, world):
    response = api.get(f"/v1/doctors/{world.doctor_id}/slots?date=2027-01-05", headers=admin)
    assert response.status_code == 200
    assert not set(DEPRECATION_HEADERS) & set(response.headers)

