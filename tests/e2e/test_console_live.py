"""What the console pushes (server-sent events), read as the browser's EventSource reads it: a saga's own page
is told when the saga changes, and a rebuild's progress is pushed until it ends. A real server (uvicorn on a
loopback port), since a stream stays open; the browser tests drive the same pages in Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID

import httpx
import pytest

from application.clinic import Clinic
from application.read_model_desk import ReadModelDesk, Rebuild
from interfaces.http.app import create_app
from interfaces.http.console.session import COOKIE, Console
from tests.integration.http_servers import client_of
from tests.kit.bookings import START, a_saga
from tests.kit.console import ISSUER, clinic_with_the_registry_down


@pytest.fixture
def clinic() -> Iterator[Clinic]:
    with clinic_with_the_registry_down() as clinic:
        yield clinic


@pytest.fixture
def console_settings() -> Console:
    return Console(ISSUER)


@pytest.fixture
def console(clinic: Clinic, console_settings: Console) -> Iterator[httpx.Client]:
    """An admin's browser on the console."""
    app = create_app(clinic, ISSUER.verifier(), console=console_settings)
    with client_of(app) as client:
        client.cookies.set(COOKIE, ISSUER.issue("admin-1", ["ADMIN"]), path="/console")
        yield client


def events(stream: httpx.Response) -> Iterator[tuple[str, str]]:
    """``(event, data)`` of each event, as EventSource dispatches them (keep-alive comments skipped)."""
    name, data = "message", []
    for line in stream.iter_lines():
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith("event:"):
            name = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data.append(line.partition(":")[2].removeprefix(" "))


def test_a_sagas_page_is_told_when_the_saga_changes_and_fetches_its_body_again(clinic, console):
    saga = a_saga(clinic)  # waiting on the registry
    page = console.get(f"/console/sagas/{saga}").text
    assert f'sse-connect="/console/sagas/{saga}/changes?seen=' in page and 'hx-trigger="sse:saga"' in page
    with console.stream("GET", f"/console/sagas/{saga}/changes") as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        clinic.compensate_saga(UUID(saga), "operator:admin-1")
        assert next(event for event, _ in events(stream)) == "saga"
    body = console.get(f"/console/sagas/{saga}", headers={"HX-Request": "true"})
    assert body.status_code == 200 and body.text.lstrip().startswith('<div id="saga-body"')
    assert "<html" not in body.text and "REJECTED" in body.text and "compensated_by_operator" in body.text
    assert "sse-connect" not in console.get(f"/console/sagas/{saga}").text  # it has ended: nothing to follow


def test_a_page_is_told_at_once_only_when_it_shows_other_than_what_is_there(clinic, console):
    saga = a_saga(clinic)  # waiting on the registry
    seen = re.search(r'changes\?seen=([0-9a-f]+)"', console.get(f"/console/sagas/{saga}").text).group(1)
    with console.stream("GET", f"/console/sagas/{saga}/changes?seen=stale") as stream:
        assert next(event for event, _ in events(stream)) == "saga"  # drawn before a change: told at once
    with console.stream("GET", f"/console/sagas/{saga}/changes?seen={seen}") as stream:
        clinic.compensate_saga(UUID(saga), "operator:admin-1")  # the first event told is this change
        assert next(event for event, _ in events(stream)) == "saga"
    assert console.get(f"/console/sagas/{saga}", headers={"HX-Request": "true"}).text.count("REJECTED")
    rows = console.get("/console/sagas?state=rejected").text
    listed = re.search(r'changes\?state=rejected&amp;seen=([0-9a-f]+)"', rows).group(1)
    with console.stream("GET", f"/console/sagas/changes?state=rejected&seen={listed}") as stream:
        a_saga(clinic, START + timedelta(days=1))  # another saga: the rows shown are the same, the sagas not
        assert next(event for event, _ in events(stream)) == "sagas"


def test_a_rebuilds_progress_is_pushed_until_it_ends_at_100_percent(clinic, console):
    a_saga(clinic)
    clinic.require(ReadModelDesk).start("saga_status")
    with console.stream("GET", "/console/read-models/saga_status/progress") as stream:
        assert stream.status_code == 200
        told = list(events(stream))  # the stream ends once the rebuild has
    assert [event for event, _ in told][-2:] == ["progress", "ended"] and told[-1][1] == "done"
    assert {event for event, _ in told} == {"progress", "ended"}
    last_bar = told[-2][1]
    assert 'value="100"' in last_bar and "readers switched" in last_bar


def test_the_page_of_a_rebuild_under_way_listens_for_its_progress_and_an_ended_one_does_not(clinic, console):
    running = clinic.require(ReadModelDesk).running["saga_status"] = Rebuild()
    page = console.get("/console/read-models/").text
    assert 'sse-connect="/console/read-models/saga_status/progress"' in page and 'sse-close="ended"' in page
    running.outcome = "done"
    assert 'sse-connect="/console/read-models/saga_status/progress"' not in console.get("/console/read-models/").text
