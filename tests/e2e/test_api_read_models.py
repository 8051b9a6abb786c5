"""What operators follow through the API: the read models (status, a rebuild and its progress) and the sagas
as they change (server-sent events). A real server (uvicorn on a loopback port) over the in-memory clinic,
since a stream stays open; the registry is down, so a saga waits for the test to act on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest

from application.clinic import Clinic
from interfaces.http.app import create_app
from interfaces.http.streams import KEEP_ALIVE
from projections.catalog import BY_NAME
from tests.e2e.test_console_live import events
from tests.integration.http_servers import client_of
from tests.kit.bookings import START, a_saga
from tests.kit.console import ISSUER, clinic_with_the_registry_down

ADMIN = {"Authorization": f"Bearer {ISSUER.issue('ops-1', ['ADMIN'])}"}
AUDITOR = {"Authorization": f"Bearer {ISSUER.issue('auditor-1', ['AUDITOR'])}"}


@pytest.fixture
def clinic() -> Iterator[Clinic]:
    with clinic_with_the_registry_down() as clinic:
        yield clinic


@pytest.fixture
def api(clinic: Clinic) -> Iterator[httpx.Client]:
    app = create_app(clinic, ISSUER.verifier())
    with client_of(app) as client:
        yield client


def test_an_auditor_reads_each_read_models_version_and_how_far_it_is_into_each_log(api, clinic):
    a_saga(clinic)
    listed = api.get("/v1/read-models", headers=AUDITOR)
    assert listed.status_code == 200
    models = {model["name"]: model for model in listed.json()["items"]}
    assert set(models) == set(BY_NAME)
    saga_status = models["saga_status"]
    assert saga_status["serving_version"] == saga_status["code_version"] == BY_NAME["saga_status"].version
    booking = saga_status["logs"]["Booking"]
    assert booking["head"] > 0 and booking["position"] == booking["head"] and booking["lag"] == 0  # settled
    assert (saga_status["building"], saga_status["last_rebuild"]) == (None, None)
    assert api.get("/v1/read-models/saga_status", headers=AUDITOR).json() == saga_status


def test_an_admin_rebuilds_a_read_model_and_follows_it_to_the_switch(api, clinic):
    a_saga(clinic)
    before = api.get("/v1/read-models/saga_status", headers=ADMIN).json()["serving_version"]
    started = api.post("/v1/read-models/saga_status/rebuild", headers=ADMIN)
    assert started.status_code == 202 and started.headers["location"] == "/v1/read-models/saga_status"
    with api.stream("GET", "/v1/read-models/saga_status/rebuild/events", headers=AUDITOR) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        told = list(events(stream))  # ends once the rebuild has
    assert [event for event, _ in told][-2:] == ["progress", "ended"] and told[-1][1] == "done"
    last = json.loads(told[-2][1])
    assert (last["state"], last["percent"], last["version"], last["error"]) == ("done", 100, before + 1, None)
    assert last["done"] == last["total"] > 0
    after = api.get("/v1/read-models/saga_status", headers=ADMIN).json()
    assert after["serving_version"] == before + 1 and after["last_rebuild"] == last  # readers switched
    assert api.get("/v1/sagas?state=open", headers=ADMIN).json()["items"]  # and served from the new version


def test_a_sagas_stream_tells_it_now_and_at_each_change_and_ends_once_it_has_ended(api, clinic):
    saga = a_saga(clinic)  # waiting on the registry
    with api.stream("GET", f"/v1/sagas/{saga}/events", headers=AUDITOR) as stream:
        told = events(stream)
        event, data = next(told)
        assert (event, json.loads(data)["state"]) == ("saga", "VALIDATING")
        assert api.post(f"/v1/sagas/{saga}/compensate", headers=ADMIN).status_code == 200
        event, data = next(told)
        assert (event, json.loads(data)["state"], json.loads(data)["rejection_reason"]) == (
            "saga", "REJECTED", "compensated_by_operator")
        assert list(told) == []  # it has ended: so has the stream


def test_the_stream_of_every_saga_tells_the_position_now_and_only_later_changes_after_a_reconnect(api, clinic):
    a_saga(clinic)
    with api.stream("GET", "/v1/sagas/events", headers=AUDITOR) as stream:
        lines = stream.iter_lines()
        seen = [next(lines) for _ in range(3)]  # id, event, data of the first event
    position = int(seen[0].removeprefix("id: "))
    assert seen[1:] == ["event: sagas", f'data: {{"position":{position}}}']
    later = a_saga(clinic, START + timedelta(days=1))
    with api.stream("GET", "/v1/sagas/events", headers={**AUDITOR, "Last-Event-ID": str(position)}) as stream:
        event, data = next(events(stream))  # the saga booked since, not the position already seen
    assert event == "sagas" and json.loads(data)["position"] > position
    assert api.get(f"/v1/sagas/{later}", headers={**AUDITOR, "X-Min-Position": f"Booking:{json.loads(data)['position']}"}
                   ).status_code == 200


def test_a_stream_lasts_as_long_as_the_app_says(clinic):
    app = create_app(clinic, ISSUER.verifier(), stream_seconds=0.5)
    with client_of(app) as client:
        started = datetime.now()
        with client.stream("GET", "/v1/sagas/events", headers=AUDITOR) as stream:
            body = stream.read().decode()
    assert body.count("event: sagas") <= 1
    assert timedelta(seconds=0.4) < datetime.now() - started < timedelta(seconds=10)


def test_a_keep_alive_is_a_comment_alone_which_no_client_dispatches_as_an_event():
    assert KEEP_ALIVE.encode() == b": keep-alive\r\n\r\n"
