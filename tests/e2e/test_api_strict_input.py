"""Strict input: what an attacker probing the API tried, and what it answers now (docs/api.md, "Bodies").

Date-times only as RFC 3339 with an offset (query: 400, body: 422); ids in paths only as canonical
UUIDs (else no route: 404, see also test_openapi_problems.py); bodies only as ``application/json``
(415); no key twice; plausible slot starts and birth dates; and an OpenAPI document that says so.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from application.clinic import Clinic
from infrastructure.security.tokens import TokenIssuer
from interfaces.http.app import create_app
from interfaces.http.controllers.consultations import MIN_POSITION_PATTERN
from interfaces.http.schemas import BIRTH_DATE, SLOT_START
from tests.e2e.conftest import START, Headers, World, assert_problem, register_doctor

NOW = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
"""The app's clock in these tests: ranges are relative to it."""
SPEC = json.loads((Path(__file__).resolve().parents[2] / "specs" / "openapi.json").read_text())


@pytest.fixture
def api(clinic: Clinic, issuer: TokenIssuer) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(clinic, issuer.verifier(), clock=lambda: NOW)) as client:
        yield client


def patient(birth_date: str) -> dict[str, Any]:
    return {"name": "Ana", "email": "ana@example.org", "birth_date": birth_date, "consent": True}


def slots(start: Any) -> dict[str, Any]:
    return {"slots": [{"start": start, "duration_minutes": 30}]}


def post_json(api: TestClient[Any], path: str, text: str, headers: Headers) -> Any:
    return api.post(path, content=text.encode(), headers={**headers, "content-type": "application/json"})


# 1. Date-times: RFC 3339 with an offset, nothing else ---------------------------------------------------

NOT_RFC3339 = ["0.5", "1e10", "0", "2027-01-05", "2027-01-05T09:00:00", "2027-01-05 09:00:00Z",
               "2027-01-05T09:00:00+0100", "2027-01-05T09:00Z", "20270105T090000Z", "yesterday"]


@pytest.mark.parametrize("value", NOT_RFC3339)
@pytest.mark.parametrize("query", ["from", "to"])
def test_a_consultation_list_bound_that_is_not_an_rfc3339_date_time_is_a_400_naming_it(api, admin, query, value):
    response = api.get(f"/v1/patients/{uuid.uuid4()}/consultations", params={query: value}, headers=admin)
    assert assert_problem(response, 400, "invalid-parameter")["errors"][0]["field"] == query


@pytest.mark.parametrize("value", NOT_RFC3339)
def test_an_audit_moment_that_is_not_an_rfc3339_date_time_is_a_400_naming_it(api, admin, value):
    response = api.get(f"/v1/audit/consultation/{uuid.uuid4()}", params={"as_of": value}, headers=admin)
    assert assert_problem(response, 400, "invalid-parameter")["errors"][0]["field"] == "as_of"


@pytest.mark.parametrize("query", [{"limit": "5", "debug": "1"}, {"From": "2027-01-05T09:00:00Z"}, {"": "x"}])
def test_a_query_parameter_the_operation_does_not_have_is_a_400_naming_it(api, admin, query):
    response = api.get(f"/v1/patients/{uuid.uuid4()}/consultations", params=query, headers=admin)
    unknown = next(name for name in query if name != "limit")
    assert assert_problem(response, 400, "invalid-parameter")["errors"][0]["field"] == unknown


@pytest.mark.parametrize("value", ["2027-01-05T09:00:00Z", "2027-01-05T10:00:00.5+01:00", "2027-01-05t09:00:00z"])
def test_an_rfc3339_date_time_in_the_query_is_read(api, admin, value):
    response = api.get(f"/v1/patients/{uuid.uuid4()}/consultations", params={"from": value, "to": value},
                       headers=admin)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("value", [0, 1e10, *NOT_RFC3339])
def test_a_body_date_time_that_is_not_rfc3339_with_an_offset_is_a_422_naming_it(api, admin, world: World, value):
    opened = api.post(f"/v1/doctors/{world.doctor_id}/slots", json=slots(value), headers=admin)
    assert assert_problem(opened, 422, "invalid-input")["errors"][0]["field"] == "$.slots[0].start"
    booking = {"patient_id": world.patient_id, "doctor_id": world.doctor_id, "start": value, "reason": "x"}
    booked = api.post("/v1/consultations", json=booking, headers=admin)
    assert assert_problem(booked, 422, "invalid-input")["errors"][0]["field"] == "$.start"


# 2. Ids in paths: canonical UUIDs only (every operation: test_openapi_problems.py) -------------------------


@pytest.mark.parametrize("headers", ["none", "admin"])
def test_another_spelling_of_an_existing_patients_id_matches_no_route_with_or_without_a_token(
        api, admin, world: World, headers):
    sent = admin if headers == "admin" else {}
    assert api.get(f"/v1/patients/{world.patient_id}", headers=admin).status_code == 200
    for spelling in (world.patient_id.upper(), f"urn:uuid:{world.patient_id}", "{" + world.patient_id + "}",
                     world.patient_id.replace("-", "")):
        assert_problem(api.get(f"/v1/patients/{spelling}", headers=sent), 404, "http-404")


# 3. Bodies are application/json -----------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/jsonp", "text/json"])
def test_a_body_not_declared_json_is_a_415_and_nothing_is_recorded(api, admin, clinic, content_type):
    before = clinic.registry.recorder.max_notification_id() or 0
    headers = {**admin, **({"content-type": content_type} if content_type else {})}
    response = api.post("/v1/patients", content=json.dumps(patient("1990-01-01")).encode(), headers=headers)
    assert_problem(response, 415, "unsupported-media-type")
    assert response.headers["accept"] == "application/json"
    assert (clinic.registry.recorder.max_notification_id() or 0) == before


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"])
def test_a_body_declared_json_with_or_without_parameters_is_read(api, admin, content_type):
    response = api.post("/v1/patients", content=json.dumps(patient("1990-01-01")).encode(),
                        headers={**admin, "content-type": content_type})
    assert response.status_code == 201, response.text


# 4. No key twice ----------------------------------------------------------------------------------------


def test_a_key_given_twice_is_a_422_naming_it_and_nothing_is_recorded(api, admin, clinic):
    before = clinic.registry.recorder.max_notification_id() or 0
    text = '{"name": "Ana", "name": "Eve", "email": "a@example.org", "birth_date": "1990-01-01", "consent": true}'
    problem = assert_problem(post_json(api, "/v1/patients", text, admin), 422, "invalid-input")
    assert problem["errors"][0]["field"] == "$.name"
    assert "`name`" in problem["detail"]
    assert (clinic.registry.recorder.max_notification_id() or 0) == before


def test_a_key_given_twice_inside_a_list_is_named_by_its_path(api, admin):
    doctor = register_doctor(api, admin)
    text = '{"slots": [{"start": "' + START + '", "duration_minutes": 30, "start": "2027-01-06T09:00:00Z"}]}'
    problem = assert_problem(post_json(api, f"/v1/doctors/{doctor}/slots", text, admin), 422, "invalid-input")
    assert problem["errors"][0]["field"] == "$.slots[0].start"


@pytest.mark.parametrize(("minutes", "accepted"), [("30", True), ("30.0", True), ("3e1", True), ("30.5", False),
                                                 ('"30"', False)])
def test_an_integer_may_be_written_with_a_zero_fraction_as_json_schema_allows_and_nothing_else(
        api, admin, world: World, minutes, accepted):
    start = (datetime.fromisoformat(START) + timedelta(hours=1)).isoformat()  # the world's slot is at START
    text = '{"slots": [{"start": "' + start + '", "duration_minutes": ' + minutes + '}]}'
    response = post_json(api, f"/v1/doctors/{world.doctor_id}/slots", text, admin)
    if accepted:
        assert response.status_code == 201, response.text
    else:
        assert assert_problem(response, 422, "invalid-input")["errors"][0]["field"] == "$.slots[0].duration_minutes"


# 5. Plausible ranges ------------------------------------------------------------------------------------

LATEST_START = NOW + SLOT_START.ahead


@pytest.mark.parametrize(("start", "accepted"), [
    ("1999-12-31T23:59:59Z", False), ("2000-01-01T00:00:00Z", True), ("2000-01-01T00:30:00+01:00", False),
    (LATEST_START.isoformat(), True), ((LATEST_START + timedelta(seconds=1)).isoformat(), False),
    ("2207-01-05T09:00:00Z", False), ("0001-01-01T00:00:00Z", False),
])
def test_a_slot_start_is_plausible_from_2000_to_two_years_ahead(api, admin, world: World, start, accepted):
    opened = api.post(f"/v1/doctors/{world.doctor_id}/slots", json=slots(start), headers=admin)
    booking = {"patient_id": world.patient_id, "doctor_id": world.doctor_id, "start": start, "reason": "x"}
    booked = api.post("/v1/consultations", json=booking, headers=admin)
    if accepted:
        assert (opened.status_code, booked.status_code) == (201, 202), (opened.text, booked.text)
    else:
        assert assert_problem(opened, 422, "invalid-input")["errors"][0]["field"] == "$.slots[0].start"
        assert assert_problem(booked, 422, "invalid-input")["errors"][0]["field"] == "$.start"


@pytest.mark.parametrize(("birth_date", "accepted"), [
    ("1899-12-31", False), ("1900-01-01", True), ("1990-01-01", True),
    ("2027-01-02", True),  # already 2 January in UTC+14 at NOW (12:00 UTC)
    ("2027-01-03", False), ("9999-12-31", False),
])
def test_a_birth_date_is_plausible_from_1900_to_today(api, admin, birth_date, accepted):
    response = api.post("/v1/patients", json=patient(birth_date), headers=admin)
    if accepted:
        assert response.status_code == 201, response.text
    else:
        assert assert_problem(response, 422, "invalid-input")["errors"][0]["field"] == "$.birth_date"


def test_the_ranges_are_documented_in_the_schema_from_their_constants():
    schemas = SPEC["components"]["schemas"]
    for struct, field, plausible in [("SlotToOpen", "start", SLOT_START), ("BookConsultation", "start", SLOT_START),
                                     ("RegisterPatient", "birth_date", BIRTH_DATE)]:
        assert plausible.description in schemas[struct]["properties"][field]["description"]
    assert BIRTH_DATE.earliest == date(1900, 1, 1) and SLOT_START.earliest == date(2000, 1, 1)


# 6. The document says what the API enforces ---------------------------------------------------------------


def test_every_request_body_schema_refuses_additional_properties_as_the_api_does():
    schemas = SPEC["components"]["schemas"]
    refs = [media["schema"]["$ref"].rpartition("/")[2] for item in SPEC["paths"].values() for op in item.values()
            for media in op.get("requestBody", {}).get("content", {}).values()]
    assert refs
    for name in {*refs, "SlotToOpen"}:
        assert schemas[name]["additionalProperties"] is False, name


@pytest.mark.parametrize("position", [
    "Scheduling:0", "Consultations:1,Scheduling:2", "Consultations:1, Booking:3", "Registry:1234567890123456789",
    "", "nonsense", "Unknown:1", "Consultations:", "Consultations:-1", "Consultations:²", ":1",
    "Consultations:12345678901234567890", "Consultations:1,", "consultations:1",
])
def test_x_min_position_is_accepted_exactly_when_its_documented_pattern_matches(api, admin, position):
    documented = {p["name"]: p["schema"] for p in SPEC["paths"]["/v1/doctors/{doctor_id}/slots"]["get"]["parameters"]}
    pattern = documented["X-Min-Position"]["pattern"]
    assert pattern == MIN_POSITION_PATTERN
    response = api.get(f"/v1/doctors/{uuid.uuid4()}/slots", params={"date": "2027-01-05"},
                       headers={**admin, "X-Min-Position": position.encode("latin-1")})
    if re.search(pattern, position):
        assert response.status_code == 200, response.text
    else:
        assert assert_problem(response, 400, "invalid-parameter")["errors"][0]["field"] == "X-Min-Position"


@pytest.mark.parametrize("method", ["TRACE", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", sorted(SPEC["paths"]))
def test_a_method_the_path_does_not_serve_is_a_405_naming_those_it_does(api, admin, path, method):
    if method.lower() in SPEC["paths"][path]:
        pytest.skip(f"{path} serves {method}")
    concrete = path.format(**{name: "consultation" if name == "kind" else str(uuid.uuid4())
                              for name in re.findall(r"\{(\w+)\}", path)})
    response = api.request(method, concrete, headers=admin)
    assert_problem(response, 405, "http-405")
    allowed = {name.strip().lower() for name in response.headers["allow"].split(",")}
    assert allowed == {*SPEC["paths"][path], "options"}
