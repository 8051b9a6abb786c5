"""The deprecation table: header formats, the sunset boundary, the policy every row keeps, the metric's bounds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from infrastructure.observability.metrics import MAX_DEPRECATED_API_CLIENTS, Metrics
from infrastructure.security.tokens import Principal
from interfaces.http.authorization import REQUIRED_SCOPE
from interfaces.http.deprecation import (
    DEPRECATIONS,
    Deprecation,
    client_of,
    deprecation_of,
    document_deprecations,
)
from interfaces.http.spec import openapi_document

DOCS = Path(__file__).resolve().parents[3] / "docs" / "deprecation.md"
ROW = Deprecation(deprecated_at=datetime(2026, 12, 1, tzinfo=UTC), sunset=datetime(2027, 7, 1, tzinfo=UTC),
                  guide="/docs/deprecation.md#x", successor="/v2/things/{thing_id}")
SIX_MONTHS = timedelta(days=182)


def test_deprecation_is_an_at_sign_and_unix_seconds_rfc_9745():
    assert ROW.headers({"thing_id": "7"})["Deprecation"] == "@1796083200"
    assert datetime.fromtimestamp(1796083200, UTC) == ROW.deprecated_at


def test_sunset_is_an_http_date_rfc_8594():
    sunset = ROW.headers({"thing_id": "7"})["Sunset"]
    assert sunset == "Thu, 01 Jul 2027 00:00:00 GMT"
    assert parsedate_to_datetime(sunset) == ROW.sunset


def test_link_names_the_guide_and_the_successor_of_this_resource():
    assert ROW.headers({"thing_id": "7"})["Link"] == (
        '</docs/deprecation.md#x>; rel="deprecation"; type="text/markdown", </v2/things/7>; rel="successor-version"')


def test_the_operation_is_gone_from_its_sunset_on():
    assert not ROW.is_gone(ROW.sunset - timedelta(microseconds=1))
    assert ROW.is_gone(ROW.sunset)


@pytest.mark.parametrize("operation", sorted(DEPRECATIONS))
def test_every_row_keeps_the_policy(operation):
    row = DEPRECATIONS[operation]
    assert row.deprecated_at.tzinfo is not None and row.sunset.tzinfo is not None
    assert row.sunset - row.deprecated_at >= SIX_MONTHS, "docs/deprecation.md: at least 6 months' notice"
    assert operation in REQUIRED_SCOPE


@pytest.mark.parametrize("operation", sorted(DEPRECATIONS))
def test_every_rows_successor_is_a_route_and_its_guide_a_section_of_the_docs(operation):
    row = DEPRECATIONS[operation]
    assert row.successor in openapi_document()["paths"]
    path, _, anchor = row.guide.partition("#")
    assert path == "/docs/deprecation.md"
    assert anchor in anchors(DOCS.read_text())


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_the_document_marks_only_deprecated_operations_and_heads_every_response():
    document = openapi_document()
    for item in document["paths"].values():
        for operation in item.values():
            deprecated = operation["operationId"] in DEPRECATIONS
            assert operation.get("deprecated", False) is deprecated, operation["operationId"]
            for response in operation["responses"].values():
                assert ({"Deprecation", "Sunset", "Link"} <= set(response.get("headers", {}))) is deprecated
            if deprecated:
                assert "410" in operation["responses"]


def test_documenting_an_operation_twice_changes_nothing_more():
    document = openapi_document()
    assert document_deprecations(document) == openapi_document()


def test_the_metrics_client_is_the_tokens_client_id():
    def principal(client_id: str | None) -> Principal:
        return Principal("ops-1", frozenset({"ADMIN"}), frozenset(), client_id)

    assert client_of({"user": principal("front-desk")}) == "front-desk"  # type: ignore[typeddict-item]
    assert client_of({"user": principal(None)}) == "unidentified"  # type: ignore[typeddict-item]
    assert client_of({}) == "anonymous"  # type: ignore[typeddict-item]


def test_an_unrouted_request_is_no_deprecated_operation():
    assert deprecation_of({}) is None  # type: ignore[typeddict-item]


def test_client_ids_past_the_bound_are_counted_as_other():
    metrics = Metrics("clinic")
    for n in range(MAX_DEPRECATED_API_CLIENTS + 5):
        metrics.deprecated_request("getConsultation", f"client-{n}")
    metrics.deprecated_request("getConsultation", "client-0")
    name = "clinic_deprecated_api_requests_total"
    assert metrics.sample(name, operation="getConsultation", client_id="client-0") == 2
    assert metrics.sample(name, operation="getConsultation", client_id="other") == 5
    assert metrics.sample(name, operation="getConsultation", client_id=f"client-{MAX_DEPRECATED_API_CLIENTS}") is None
