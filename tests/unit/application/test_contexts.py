"""The context declarations are whole and consistent, and what is derived from them routes every request."""

from __future__ import annotations

import re

import pytest

from application.bootstrap import AUDITED_KINDS, RECORDS, SYSTEM
from application.contexts import BY_SERVICE, CONTEXTS
from interfaces.http.contexts import CONTEXT_CONTROLLERS, PROJECTIONS, SERVICE_CONTROLLERS, context_routes, service_for
from projections.catalog import ALL_PROJECTIONS


def test_each_aggregate_is_recorded_by_one_context_and_audited_only_where_recorded():
    recorded = [aggregate for context in CONTEXTS for aggregate in context.records]
    assert len(recorded) == len(set(recorded))
    for context in CONTEXTS:
        assert set(context.audited.values()) <= set(context.records), context.service


def test_each_read_model_is_served_by_one_context_and_reads_logs_that_exist():
    served = [name for context in CONTEXTS for name in context.read_models]
    assert sorted(served) == sorted(projection.name for projection in ALL_PROJECTIONS)
    names = {context.name for context in CONTEXTS}
    assert all(set(projection.leaders) <= names for projection in ALL_PROJECTIONS)


def test_the_system_graph_is_the_declared_follows():
    declared = {(BY_SERVICE[leader].name, context.name) for context in CONTEXTS for leader in context.follows}
    assert set(SYSTEM.edges) == declared == {
        ("Consultations", "Booking"), ("Scheduling", "Booking"), ("Booking", "Consultations"), ("Booking", "Scheduling"),
        ("Consultations", "Notifications")}
    assert set(RECORDS) == {context.name for context in CONTEXTS}
    assert set(AUDITED_KINDS) == {kind for context in CONTEXTS for kind in context.audited}


def test_every_service_has_its_controllers_and_the_shared_ones():
    assert set(CONTEXT_CONTROLLERS) == set(BY_SERVICE) == set(SERVICE_CONTROLLERS) - {PROJECTIONS}


@pytest.mark.parametrize(("path", "service"), sorted(set(context_routes())))
def test_the_gateway_sends_every_route_to_the_service_that_serves_it(path, service):
    concrete = re.sub(r"\{[^}]+\}", "0b1c9f5e-0000-4000-8000-000000000001", path)
    assert service_for(concrete) == service


@pytest.mark.parametrize(("kind", "service"), [(kind, context.service) for context in CONTEXTS
                                               for kind in context.audited])
def test_the_gateway_sends_each_audited_kind_to_the_context_that_records_it(kind, service):
    assert service_for(f"/v1/audit/{kind}/0b1c9f5e-0000-4000-8000-000000000001") == service


def test_a_path_no_service_serves_is_said():
    with pytest.raises(LookupError):
        service_for("/v2/nothing")
