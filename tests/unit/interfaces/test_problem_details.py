"""A problem's detail never carries the driver's text (SQL, constraint names)."""

from __future__ import annotations

from eventsourcing.persistence import IntegrityError
from litestar import Litestar, get
from litestar.testing import TestClient

from interfaces.http.problems import CONCURRENT_WRITE_DETAIL, problem_response


@get("/conflict")
async def conflict() -> None:
    raise IntegrityError('UNIQUE constraint failed: stored_events.originator_id, stored_events.originator_version')


def test_a_concurrent_write_is_a_409_whose_detail_names_no_sql():
    with TestClient(Litestar([conflict], exception_handlers={Exception: problem_response})) as client:
        response = client.get("/conflict")
    assert response.status_code == 409
    assert response.json()["type"] == "urn:clinic:problem:version-conflict"
    assert response.json()["detail"] == CONCURRENT_WRITE_DETAIL
    assert "UNIQUE" not in response.text and "stored_events" not in response.text
