"""HTTP metrics: one middleware around the whole app, by route template and status; ``/metrics``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from joserfc.jwk import ECKey
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from application.bootstrap import bootstrap
from application.clinic import Clinic
from application.settings import Settings
from infrastructure.observability.metrics import Metrics
from infrastructure.security.tokens import TokenIssuer
from interfaces.http.app import create_app
from interfaces.http.spec import openapi_document

SERVICE = "test-api"


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), "clinic-dev", "clinic-api")


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(SERVICE)


@pytest.fixture
def clinic(metrics: Metrics) -> Iterator[Clinic]:
    clinic = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05), metrics=metrics)
    yield clinic
    clinic.close()


@pytest.fixture
def api(clinic: Clinic, issuer: TokenIssuer, metrics: Metrics) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(clinic, issuer.verifier(), metrics=metrics)) as client:
        yield client


@pytest.fixture
def admin(issuer: TokenIssuer) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue('ops-1', ('ADMIN',))}"}


def requests(metrics: Metrics, method: str, route: str, status: int) -> float | None:
    return metrics.sample("clinic_http_requests_total", method=method, route=route, status=str(status))


def test_a_request_is_counted_by_its_route_template_and_status_not_its_path(api, admin, metrics):
    doctor_id = api.post("/v1/doctors", json={"name": "Dr Rui", "specialty": "gp"}, headers=admin).json()["doctor_id"]
    assert api.get(f"/v1/doctors/{doctor_id}/slots?date=2027-01-05", headers=admin).status_code == 200
    assert api.get(f"/v1/doctors/{doctor_id}/slots?date=2027-01-06", headers=admin).status_code == 200

    assert requests(metrics, "POST", "/v1/doctors", 201) == 1
    assert requests(metrics, "GET", "/v1/doctors/{doctor_id}/slots", 200) == 2
    assert metrics.sample("clinic_http_request_duration_seconds_count", method="GET",
                          route="/v1/doctors/{doctor_id}/slots") == 2
    exported = api.get("/metrics").text
    assert doctor_id not in exported  # no id ever becomes a label value


def test_refusals_and_errors_are_counted_under_their_route_with_their_status(api, metrics):
    assert api.get("/v1/consultations/00000000-0000-0000-0000-000000000001").status_code == 401
    assert requests(metrics, "GET", "/v1/consultations/{consultation_id}", 401) == 1


def test_a_path_no_route_matches_is_counted_as_unmatched(api, metrics):
    assert api.get("/no/such/path").status_code == 404
    assert api.get("/wp-admin/setup.php").status_code == 404
    assert requests(metrics, "GET", "unmatched", 404) == 2
    assert metrics.sample("clinic_http_request_duration_seconds_bucket", method="GET", route="unmatched",
                          le="+Inf") == 2


def test_metrics_need_no_token_and_are_in_the_prometheus_text_format(api, admin, metrics):
    api.post("/v1/doctors", json={"name": "Dr Rui", "specialty": "gp"}, headers=admin)
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert {"clinic_http_requests", "clinic_http_request_duration_seconds", "clinic_event_store_appended_events",
            "clinic_sagas_started", "clinic_projection_position"} <= set(families)
    [sample] = [s for s in families["clinic_http_requests"].samples if s.labels["route"] == "/v1/doctors"]
    assert sample.labels == {"service": SERVICE, "method": "POST", "route": "/v1/doctors", "status": "201"}
    assert not any(name.endswith("_created") for name in families)


def test_metrics_are_not_in_the_openapi_document_and_absent_without_metrics(api, clinic, issuer):
    assert api.get("/metrics").status_code == 200
    served = api.get("/schema/openapi.json").json()
    assert "/metrics" not in served["paths"] and served["paths"].keys() == openapi_document()["paths"].keys()
    with TestClient(create_app(clinic, issuer.verifier())) as plain:
        assert plain.get("/metrics").status_code == 404
