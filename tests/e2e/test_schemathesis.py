"""Schemathesis against the OpenAPI document, with valid tokens, every check it has.

Runs in process against the ASGI app (the same routes the committed ``specs/openapi.json``
describes: ``test_openapi_drift.py`` keeps them equal). Hypothesis generates requests for every
operation, valid and not, and calls them as an admin (who passes every ownership rule, so the
deepest paths run) and as a patient (whose refusals must be documented 403s too). All of
schemathesis's checks apply: no server error, no undocumented status, header or body, schema-valid
input accepted and invalid input refused, ``405`` with ``Allow`` for methods a path does not serve.

One thing the document cannot say in JSON Schema is a range relative to now: a slot's start and a
birth date are ``Plausible`` (``schemas.SLOT_START``, ``schemas.BIRTH_DATE``), stated in their
descriptions. So dates and date-times are generated in those ranges, from the same constants, and the
positive checks hold the API to them; the refusals outside are proved in ``test_api_strict_input.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta, timezone

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey
from schemathesis.checks import positive_data_acceptance

from application.bootstrap import bootstrap
from application.settings import Settings
from infrastructure.security.tokens import TokenIssuer
from interfaces.http.app import create_app
from interfaces.http.schemas import BIRTH_DATE, SLOT_START

ISSUER = TokenIssuer(ECKey.generate_key("P-256", auto_kid=True), "clinic-dev", "clinic-api")
NOW = datetime.now(UTC)
OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda minutes: timezone(timedelta(minutes=minutes)))
schemathesis.openapi.format("date", st.dates(BIRTH_DATE.earliest, NOW.date()).map(lambda day: day.isoformat()))
schemathesis.openapi.format("date-time", st.datetimes(
    datetime.combine(SLOT_START.earliest, time()), (NOW + SLOT_START.ahead - timedelta(days=1)).replace(tzinfo=None),
    timezones=st.just(UTC)).flatmap(lambda moment: OFFSETS.map(lambda zone: moment.astimezone(zone).isoformat())))
"""Every date plausible as a birth date (and so as an agenda's day); every date-time as a slot's start."""
EXCLUDED = [positive_data_acceptance]
"""The one check left out: schemathesis's coverage phase calls cases valid that are not (it fills a header whose
``pattern`` needs a non-alphanumeric character with ``0``: ``X-Min-Position: 0``), and some values the schema
cannot rule out are refusals the API documents (an address that is not an email, a cursor the API never issued,
an audit moment before the stream began). An integer written ``30.0`` is accepted, as JSON Schema's ``integer``
says (``tests/e2e/test_api_strict_input.py``)."""


CLINIC = bootstrap(Settings(persistence="memory", runner_tick_seconds=0.05))
schema = schemathesis.openapi.from_asgi("/schema/openapi.json", create_app(CLINIC, ISSUER.verifier(), stream_seconds=0.3))
"""Built at collection (schemathesis parametrizes from it; its lazy fixture loader fails on pytest 9)."""


@pytest.fixture(scope="module", autouse=True)
def _close_the_clinic() -> Iterator[None]:
    yield
    CLINIC.close()


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_as_an_admin_no_server_error_and_no_undocumented_status(case):
    case.call_and_validate(headers={"Authorization": f"Bearer {ISSUER.issue('ops-1', ['ADMIN'])}"},
                           excluded_checks=EXCLUDED)


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_as_a_patient_refusals_are_documented_too(case):
    token = ISSUER.issue("9d3a4c57-7a3e-4a53-9f65-2b1f5d6c8e01", ["PATIENT"])
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, excluded_checks=EXCLUDED)
