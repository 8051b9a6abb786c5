"""Consumer side: the patient portal's client against the Pact mock server of the public API."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest

from tests.contract import portal_contract as contract
from tests.contract.pacts import assert_matches_committed
from tests.contract.portal_client import ApiProblem, PortalClient

PATIENT, DOCTOR, CONSULTATION = UUID(contract.PATIENT), UUID(contract.DOCTOR), UUID(contract.CONSULTATION)
START = datetime(2027, 1, 5, 9, tzinfo=UTC)


def portal(server: object) -> PortalClient:
    return PortalClient(str(server.url), contract.TOKEN)  # type: ignore[attr-defined]


def test_the_portal_books_and_keeps_where_to_follow_the_booking():
    with contract.build(contract.BOOK).serve() as server, portal(server) as client:
        receipt = client.book(PATIENT, DOCTOR, START, "check-up")
    assert (receipt.consultation_id, receipt.status) == (CONSULTATION, "REQUESTED")
    assert receipt.location == f"/v1/consultations/{CONSULTATION}"


def test_the_portal_reads_a_confirmed_consultation():
    with contract.build(contract.READ).serve() as server, portal(server) as client:
        consultation = client.consultation(CONSULTATION)
    assert (consultation.status.code, consultation.patient_id, consultation.start) == ("CONFIRMED", PATIENT, START)


def test_the_portal_reports_a_consultation_it_may_not_see_by_its_problem_type():
    with contract.build(contract.READ_MISSING).serve() as server, portal(server) as client:
        with pytest.raises(ApiProblem) as missing:
            client.consultation(CONSULTATION)
    assert (missing.value.problem.status, missing.value.problem.type) == (403, "urn:clinic:problem:forbidden")


def test_the_portal_shows_which_field_the_api_refused():
    naive = datetime(2027, 1, 5, 9)  # the portal's bug this interaction documents: a start without a zone
    with contract.build(contract.BOOK_WITHOUT_TIMEZONE).serve() as server, portal(server) as client:
        with pytest.raises(ApiProblem) as refused:
            client.book(PATIENT, DOCTOR, naive, "check-up")
    problem = refused.value.problem
    assert (problem.status, problem.type) == (422, "urn:clinic:problem:invalid-input")
    assert problem.errors and problem.errors[0].field == "$.start"


def test_the_portal_moves_a_consultation_and_keeps_where_to_read_whether_it_moved():
    later = datetime(2027, 1, 5, 10, tzinfo=UTC)
    with contract.build(contract.RESCHEDULE).serve() as server, portal(server) as client:
        receipt = client.reschedule(CONSULTATION, later)
    assert (receipt.consultation_id, receipt.start, receipt.status) == (CONSULTATION, later, "pending")
    assert receipt.location == f"/v2/consultations/{CONSULTATION}"


def test_the_portal_subscribes_to_outcomes_and_keeps_the_secret_to_verify_them():
    with contract.build(contract.SUBSCRIBE).serve() as server, portal(server) as client:
        webhook = client.subscribe(contract.HOOK_URL, ["consultation.confirmed", "consultation.rejected"])
    assert (webhook.webhook_id, webhook.audience, webhook.secret) == (UUID(contract.WEBHOOK), "own", contract.SECRET)


def test_the_committed_pact_is_what_the_portal_expects(tmp_path):
    assert_matches_committed(contract.build(), tmp_path)
