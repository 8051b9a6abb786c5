"""Who may use the operations console, and how its session, forms and pages are protected (over HTTP;
the browser tests drive the same pages in Chromium)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from litestar.testing import TestClient

from domain.metadata import event_metadata
from interfaces.http.app import create_app
from interfaces.http.console.render import CONTENT_SECURITY_POLICY
from interfaces.http.console.session import COOKIE, Console
from tests.kit.bookings import START, a_saga

PAGES = ["/console/sagas", "/console/sagas?state=stuck", "/console/sagas/{saga}", "/console/streams/",
         "/console/streams/saga/{saga}?version=1", "/console/read-models/"]
"""Every console page (the matrix below calls each as each persona)."""
ALLOWED = {"admin": "ADMIN", "auditor": "AUDITOR"}
REFUSED = {"patient": "PATIENT", "doctor": "DOCTOR"}


@pytest.fixture
def console(clinic, issuer) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(clinic, issuer.verifier(), console=Console(issuer))) as client:
        yield client


@pytest.fixture
def saga(clinic) -> str:
    return a_saga(clinic)


def csrf(console: TestClient[Any]) -> str:
    return re.search(r'name="_csrf_token" value="([^"]+)"', console.get("/console/login").text).group(1)


def signed_in(console: TestClient[Any], issuer: Any, role: str) -> None:
    console.cookies.set(COOKIE, issuer.issue(f"{role.lower()}-1", [role]), path="/console")


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("persona", [*ALLOWED, *REFUSED, "nobody"])
def test_the_console_matrix_admins_and_auditors_only(console, issuer, saga, persona, page):
    if persona != "nobody":
        signed_in(console, issuer, {**ALLOWED, **REFUSED}[persona])
    response = console.get(page.format(saga=saga), follow_redirects=False)
    if persona in ALLOWED:
        assert response.status_code == 200 and saga in console.get("/console/sagas").text
    elif persona in REFUSED:
        assert response.status_code == 403 and "for admins and auditors" in response.text
    else:
        assert (response.status_code, response.headers["location"]) == (302, "/console/login")


def test_signing_in_sets_a_session_cookie_no_script_or_other_site_can_use(console):
    response = console.post("/console/login", data={"operator": "ops-1", "role": "ADMIN", "_csrf_token": csrf(console)},
                            follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/console/sagas")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert "Path=/console" in cookie
    assert "ops-1" in console.get("/console/sagas").text


def test_a_form_without_its_csrf_token_is_refused(console):
    for path, form in (("/console/login", {"operator": "ops-1", "role": "ADMIN"}), ("/console/logout", {})):
        assert console.post(path, data=form, follow_redirects=False).status_code == 403
    forged = console.post("/console/login", data={"operator": "ops-1", "role": "ADMIN", "_csrf_token": "forged"},
                          follow_redirects=False)
    assert forged.status_code == 403


def test_only_an_admin_or_auditor_may_be_named_at_sign_in(console):
    token = csrf(console)
    for form in ({"operator": "ops-1", "role": "PATIENT"}, {"operator": "", "role": "ADMIN"}):
        response = console.post("/console/login", data={**form, "_csrf_token": token}, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/console/login?error=")
        assert "set-cookie" not in response.headers or COOKIE not in response.headers["set-cookie"]


def test_an_expired_or_forged_session_is_sent_to_sign_in(console, issuer):
    for token in ("not-a-token", issuer.issue("ops-1", ["ADMIN"], ttl_seconds=-120)):
        console.cookies.set(COOKIE, token, path="/console")
        response = console.get("/console/sagas", follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (302, "/console/login")


def test_pages_carry_a_strict_content_security_policy_and_load_only_our_assets(console, issuer):
    signed_in(console, issuer, "ADMIN")
    page = console.get("/console/sagas")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert all(source.startswith(("/console", "#")) for source in sources), sources
    assert "<script>" not in page.text and " style=" not in page.text and " on" + "click=" not in page.text
    assert console.get("/console/static/htmx.min.js").status_code == 200


def test_the_console_session_is_no_token_for_the_api(console, issuer, saga):
    signed_in(console, issuer, "ADMIN")
    assert console.get(f"/v1/sagas/{saga}").status_code == 401  # the cookie is not a bearer token


def test_the_console_is_not_in_the_openapi_document(console):
    assert not [path for path in console.get("/schema/openapi.json").json()["paths"] if path.startswith("/console")]


def test_without_a_console_configured_there_is_none(clinic, issuer):
    with TestClient(create_app(clinic, issuer.verifier())) as api:
        assert api.get("/console/sagas").status_code == 404
        assert api.get(f"/console/sagas/{uuid.uuid4()}").status_code == 404


@pytest.mark.parametrize("action", ["compensate", "retry-validation"])
def test_only_an_admin_acts_on_a_saga_and_only_after_confirming(console, issuer, saga, action):
    signed_in(console, issuer, "AUDITOR")
    assert console.get(f"/console/sagas/{saga}/{action}").status_code == 403
    assert console.post(f"/console/sagas/{saga}/{action}", data={"_csrf_token": csrf(console)},
                        follow_redirects=False).status_code == 403
    signed_in(console, issuer, "ADMIN")
    page = console.get(f"/console/sagas/{saga}/{action}")
    assert page.status_code == 200 and 'id="confirm"' in page.text  # a link only asks; the form does it
    ended = console.post(f"/console/sagas/{saga}/{action}", data={"_csrf_token": csrf(console)},
                         follow_redirects=False)
    assert ended.status_code == 409 and "Not now" in ended.text  # the saga confirmed: nothing to do
    assert console.post(f"/console/sagas/{saga}/{action}", follow_redirects=False).status_code == 403  # no CSRF token


def test_the_list_narrows_to_a_correlation_id_a_patient_a_doctor_and_days(console, issuer, clinic):
    patient = clinic.registry.register_patient("Bia", "bia@example.org", date(1991, 1, 1), True)
    doctors = [clinic.registry.register_doctor(f"Dr {n}", "gp") for n in ("A", "B")]
    for doctor in doctors:
        clinic.open_slots(doctor, [(START, 30)])
    sagas = []
    for number, doctor in enumerate(doctors):
        with event_metadata(correlation_id=f"desk-{number}"):
            sagas.append(str(clinic.book(patient, doctor, START, "check-up").saga_id))
    clinic.wait_until_settled()
    signed_in(console, issuer, "ADMIN")

    def listed(query: str) -> list[str]:
        page = console.get(f"/console/sagas?{query}")
        assert page.status_code == 200, page.text
        return re.findall(r'data-saga="([0-9a-f-]+)"', page.text)

    assert listed("correlation=desk-1") == [sagas[1]]
    assert listed(f"doctor={doctors[0]}") == [sagas[0]]
    assert listed(f"patient={patient}&state=confirmed") == sagas[::-1]
    today = clinic.saga(uuid.UUID(sagas[0])).steps[0].at.date()
    assert listed(f"since={today}&until={today}") == sagas[::-1] and listed(f"since={today.replace(year=2099)}") == []
    assert console.get("/console/sagas?since=yesterday").status_code == 400  # not a date


def test_a_saga_links_to_its_trace_where_the_deployment_names_the_trace_backend(issuer):
    console = Console(issuer, trace_url_template="https://tempo.example.org/explore?trace={trace_id}")
    assert console.trace_url("4bf92f3577b34da6a3ce929d0e0e4736") == \
        "https://tempo.example.org/explore?trace=4bf92f3577b34da6a3ce929d0e0e4736"
    assert console.trace_url(None) is None and Console(issuer).trace_url("4bf92f3577b34da6a3ce929d0e0e4736") is None


def test_a_stream_shows_erased_data_as_erased_and_a_patients_read_is_recorded(console, issuer, clinic):
    patient = clinic.registry.register_patient("Rita", "rita@example.org", date(1980, 5, 5), True)
    clinic.registry.erase_patient(patient)
    signed_in(console, issuer, "ADMIN")
    page = console.get(f"/console/streams/patient/{patient}")
    assert page.status_code == 200 and "[erased]" in page.text and "Rita" not in page.text
    assert [(read.reader, read.operation) for read in clinic.patient_records.accesses(patient)] == [
        ("admin-1", "console")]


def test_a_stream_is_found_by_kind_and_id_and_an_unknown_one_is_a_page_saying_so(console, issuer, saga):
    signed_in(console, issuer, "AUDITOR")
    found = console.get(f"/console/streams/?kind=saga&id={saga}", follow_redirects=False)
    assert (found.status_code, found.headers["location"]) == (302, f"/console/streams/saga/{saga}")
    assert console.get(f"/console/streams/saga/{saga}?version=1").status_code == 200
    assert console.get(f"/console/streams/slot/{uuid.uuid4()}").status_code == 404
    assert console.get(f"/console/streams/nonsense/{uuid.uuid4()}").status_code == 404


def test_a_stream_is_found_by_its_id_alone_whatever_its_kind(console, issuer, clinic, saga):
    signed_in(console, issuer, "AUDITOR")
    consultation = clinic.saga(uuid.UUID(saga)).consultation_id
    for kind, aggregate in (("saga", saga), ("consultation", consultation)):
        found = console.get(f"/console/streams/?kind=&id={aggregate}", follow_redirects=False)
        assert (found.status_code, found.headers["location"]) == (302, f"/console/streams/{kind}/{aggregate}")
    unknown = console.get(f"/console/streams/?id={uuid.uuid4()}")
    assert unknown.status_code == 200 and 'id="nothing-found"' in unknown.text


def test_a_requests_streams_are_found_by_its_correlation_id_and_a_saga_links_to_what_it_concerns(
        console, issuer, clinic):
    patient = clinic.registry.register_patient("Bia", "bia@example.org", date(1991, 1, 1), True)
    doctor = clinic.registry.register_doctor("Dr A", "gp")
    clinic.open_slots(doctor, [(START, 30)])
    with event_metadata(correlation_id="desk-7"):
        booked = clinic.book(patient, doctor, START, "check-up")
    clinic.wait_until_settled()
    signed_in(console, issuer, "AUDITOR")
    found = console.get("/console/streams/?id=desk-7")
    assert found.status_code == 200
    links = re.findall(r'href="/console/streams/([a-z-]+)/([0-9a-f-]+)"', found.text)
    assert links == [("saga", str(booked.saga_id)), ("consultation", str(booked.consultation_id)),
                     ("patient", str(patient)), ("doctor", str(doctor))]
    saga_page = console.get(f"/console/streams/saga/{booked.saga_id}").text
    related = re.search(r'<p id="related">(.*?)</p>', saga_page, re.S).group(1)
    assert re.findall(r'href="/console/streams/([a-z-]+)/([0-9a-f-]+)"', related) == links[1:]
    assert 'id="nothing-found"' in console.get("/console/streams/?id=desk-8").text


def test_a_streams_state_as_of_a_moment_is_the_latest_version_then(console, issuer, clinic, saga):
    signed_in(console, issuer, "AUDITOR")
    consultation = clinic.saga(uuid.UUID(saga)).consultation_id
    events = clinic.auditor.trail("consultation", consultation).events
    assert len(events) >= 2
    first, second = events[0].timestamp, events[1].timestamp
    between = first + (second - first) / 2
    at = console.get(f"/console/streams/consultation/{consultation}", params={"as-of": between.isoformat()})
    assert at.status_code == 200 and "State at version 1, the latest as of" in at.text
    naive = second.replace(tzinfo=None).isoformat(timespec="microseconds")  # a datetime-local field: UTC
    assert "State at version 2" in console.get(f"/console/streams/consultation/{consultation}",
                                                 params={"as-of": naive}).text
    before = console.get(f"/console/streams/consultation/{consultation}",
                         params={"as-of": (first - (second - first)).isoformat()})
    assert before.status_code == 404 and "did not exist at" in before.text
    assert console.get(f"/console/streams/consultation/{consultation}", params={"as-of": "noon"}).status_code == 400


def test_an_auditor_reads_the_read_models_and_only_an_admin_rebuilds_one(console, issuer, saga):
    signed_in(console, issuer, "AUDITOR")
    overview = console.get("/console/read-models/")
    assert overview.status_code == 200 and 'data-projection="saga_status"' in overview.text
    assert 'id="rebuild-saga_status"' not in overview.text
    assert console.post("/console/read-models/saga_status/rebuild", data={"_csrf_token": csrf(console)},
                        follow_redirects=False).status_code == 403
    signed_in(console, issuer, "ADMIN")
    assert console.post("/console/read-models/nonsense/rebuild", data={"_csrf_token": csrf(console)},
                        follow_redirects=False).status_code == 404
    assert console.get("/console/read-models/nonsense/progress").status_code == 404
