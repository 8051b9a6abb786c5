"""The console apart from the stores (``clinic run console``) reads sagas and streams through the clinic's public
API, as the signed-in operator: the same pages, from the API's answers, with the API's own checks and access
log. Two real servers here: the clinic's API (uvicorn, as the gateway would front it) and the console."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from uuid import UUID

import httpx
import pytest
import uvicorn

from application.clinic import Clinic
from interfaces.http.app import create_app
from interfaces.http.console.oauth import ConsoleOAuth
from interfaces.http.console.session import COOKIE, Console
from interfaces.security.trust import CONSOLE_SCOPES
from tests.e2e.test_console_live import events
from tests.integration.http_servers import uvicorn_server
from tests.kit.bookings import a_saga
from tests.kit.console import ISSUER, clinic_with_the_registry_down

OAUTH = ConsoleOAuth("clinic-console", "http://127.0.0.1:9/oauth/authorize", "http://127.0.0.1:9/oauth/token",
                     "http://127.0.0.1:9/console/callback", " ".join(CONSOLE_SCOPES))


@pytest.fixture
def clinic() -> Iterator[Clinic]:
    with clinic_with_the_registry_down() as clinic:
        yield clinic


def served(app: object) -> Iterator[str]:
    with uvicorn_server(lambda port: uvicorn.Config(app, port=port, log_config=None, lifespan="on")) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def api(clinic) -> Iterator[str]:
    yield from served(create_app(clinic, ISSUER.verifier()))


def console_reading(api_url: str) -> Iterator[str]:
    console = Console(None, oauth=OAUTH, in_process=False, api_url=api_url)
    yield from served(create_app(Clinic.hosting({}), ISSUER.verifier(), controllers=[], console=console))


@pytest.fixture
def console(api) -> Iterator[str]:
    yield from console_reading(api)


def operator(console: str, role: str = "ADMIN") -> httpx.Client:
    client = httpx.Client(base_url=console, timeout=20, follow_redirects=True)
    client.cookies.set(COOKIE, ISSUER.issue(f"{role.lower()}-1", [role], list(CONSOLE_SCOPES)), path="/console")
    return client


def csrf(client: httpx.Client) -> str:
    return re.search(r'name="_csrf_token" value="([^"]+)"', client.get("/console/sagas").text).group(1)


def test_the_sagas_and_a_sagas_page_come_from_the_api(clinic, console):
    saga = a_saga(clinic)  # waiting on the registry
    with operator(console, "AUDITOR") as auditor:
        listed = auditor.get("/console/sagas?state=open")
        assert listed.status_code == 200 and re.findall(r'data-saga="([0-9a-f-]+)"', listed.text) == [saga]
        assert 'sse-connect="/console/sagas/changes?state=open&amp;seen=' in listed.text  # relays the API's
        page = auditor.get(f"/console/sagas/{saga}")
    assert page.status_code == 200 and 'id="state">VALIDATING' in page.text
    assert "validate_registrants" in page.text and "registry down" in page.text  # the step, and why it waits
    recorded = [event.type for event in clinic.auditor.trail("saga", UUID(saga)).events]
    assert re.findall(r"<tr><td>\d+</td><td><code>([^<]+)</code>", page.text) == recorded  # its stream, from the audit
    assert 'href="/console/read-models"' in page.text  # the projection worker's, through the API


def test_an_admin_compensates_through_the_api_as_themself(clinic, console):
    saga = a_saga(clinic)
    with operator(console) as admin:
        done = admin.post(f"/console/sagas/{saga}/compensate", data={"_csrf_token": csrf(admin)})
    assert done.status_code == 200 and "REJECTED" in done.text and "compensated_by_operator" in done.text
    last = clinic.auditor.trail("saga", UUID(saga)).events[-1]
    assert last.actor == "operator:admin-1"  # the API recorded the operator, from their own token


def test_an_auditor_is_refused_an_action(clinic, console):
    saga = a_saga(clinic)
    with operator(console, "AUDITOR") as auditor:
        assert auditor.post(f"/console/sagas/{saga}/compensate", data={"_csrf_token": csrf(auditor)}).status_code \
            == 403
    assert clinic.saga(UUID(saga)).state == "VALIDATING"


def test_streams_are_found_and_read_through_the_api_and_a_patients_read_is_the_apis_record(clinic, console):
    saga = a_saga(clinic)
    consultation = clinic.saga(UUID(saga)).consultation_id
    patient = clinic.registry.register_patient("Rita", "rita@example.org", date(1980, 5, 5), True)
    with operator(console) as admin:
        found = admin.get(f"/console/streams/?id={consultation}", follow_redirects=False)
        assert found.headers["location"] == f"/console/streams/consultation/{consultation}"
        stream = admin.get(f"/console/streams/consultation/{consultation}?version=1")
        assert stream.status_code == 200 and "State at version 1" in stream.text
        assert admin.get(f"/console/streams/patient/{patient}").status_code == 200
        assert admin.get(f"/console/streams/slot/{UUID(int=5)}").status_code == 404
    assert [(read.reader, read.operation) for read in clinic.patient_records.accesses(patient)] == [
        ("admin-1", "auditAggregate")]


def test_the_sagas_pages_follow_the_apis_streams_of_saga_changes(clinic, console):
    saga = a_saga(clinic)  # waiting on the registry
    with operator(console, "AUDITOR") as auditor, auditor.stream("GET", f"/console/sagas/{saga}/changes") as one, \
            auditor.stream("GET", "/console/sagas/changes") as every:
        assert (one.status_code, every.status_code) == (200, 200)
        assert one.headers["content-type"].startswith("text/event-stream")
        clinic.compensate_saga(UUID(saga), "operator:admin-1")
        assert next(event for event, _ in events(one)) == "saga"
        assert next(event for event, _ in events(every)) == "sagas"


def test_read_models_are_read_and_rebuilt_through_the_api_to_100_percent(clinic, console):
    from application.read_model_desk import ReadModelDesk

    a_saga(clinic)
    with operator(console) as admin:
        page = admin.get("/console/read-models/")
        assert page.status_code == 200 and 'data-projection="saga_status"' in page.text
        started = admin.post("/console/read-models/saga_status/rebuild", data={"_csrf_token": csrf(admin)},
                             follow_redirects=False)
        assert started.status_code == 303
        with admin.stream("GET", "/console/read-models/saga_status/progress") as stream:
            told = list(events(stream))  # ends once the rebuild has ended, on the API's side
    assert [event for event, _ in told][-2:] == ["progress", "ended"] and told[-1][1] == "done"
    assert 'value="100"' in told[-2][1] and "readers switched" in told[-2][1]
    assert clinic.require(ReadModelDesk).of("saga_status").outcome == "done"  # the API's process rebuilt it


def test_an_auditor_reads_the_read_models_and_is_refused_a_rebuild(clinic, console):
    from application.read_model_desk import ReadModelDesk

    with operator(console, "AUDITOR") as auditor:
        assert auditor.get("/console/read-models/").status_code == 200
        assert auditor.post("/console/read-models/saga_status/rebuild",
                            data={"_csrf_token": csrf(auditor)}).status_code == 403
    assert clinic.require(ReadModelDesk).of("saga_status") is None


def test_an_api_that_does_not_answer_is_a_503_page(clinic):
    for console in console_reading("http://127.0.0.1:9"):
        with operator(console) as admin:
            page = admin.get("/console/sagas")
        assert page.status_code == 503 and page.headers["Retry-After"]


def test_in_a_cluster_each_read_goes_straight_to_the_service_the_gateway_would_route_it_to():
    from interfaces.http.console.reads import ApiReads

    reads = ApiReads("http://clinic-{service}-api", "token")
    assert reads._url("/v1/sagas?state=open") == "http://clinic-booking-api/v1/sagas?state=open"
    assert reads._url("/v1/audit/slot/1") == "http://clinic-scheduling-api/v1/audit/slot/1"
    assert reads._url("/v1/audit/patient/1") == "http://clinic-registry-api/v1/audit/patient/1"
    assert ApiReads("http://127.0.0.1:8080", "token")._url("/v1/sagas") == "http://127.0.0.1:8080/v1/sagas"
