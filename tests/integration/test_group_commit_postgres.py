"""Group commit on PostgreSQL: concurrent booking requests share transactions; a conflict fails only its caller."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from eventsourcing.persistence import IntegrityError

from application.bootstrap import build_applications, migrate
from domain.metadata import event_metadata
from tests.conftest import settings_for
from tests.unit.application.test_group_commit import held_first_commit

START = datetime(2027, 1, 4, 8, tzinfo=UTC)


def test_concurrent_requests_and_a_conflict_on_postgres(tmp_path, request):
    settings = dataclasses.replace(settings_for("postgres", tmp_path, request), group_commit=True)
    migrate(settings)
    apps = build_applications(settings, create_table=False)
    consultations = apps["Consultations"]
    try:
        existing = consultations.request_consultation(uuid4(), uuid4(), START, "check-up")
        first, second = (consultations.repository.get(existing) for _ in range(2))
        first.confirm()
        second.confirm()  # the same version twice: whichever is recorded second conflicts
        held_first_commit(consultations, consultations.group_commit, waiting=7)

        def request_one(i: int):
            with event_metadata(correlation_id=f"pg-{i}"):
                return consultations.request_consultation(uuid4(), uuid4(), START + timedelta(hours=i), "check-up")

        def save(aggregate):
            try:
                return consultations.save(aggregate)
            except IntegrityError as error:
                return error

        with ThreadPoolExecutor(8) as pool:
            requested = [pool.submit(request_one, i) for i in range(1, 7)]
            confirmations = [pool.submit(save, first), pool.submit(save, second)]
            ids = [f.result() for f in requested]
            outcomes = [f.result() for f in confirmations]

        assert sorted(isinstance(o, IntegrityError) for o in outcomes) == [False, True]
        assert consultations.group_commit.largest_batch >= 2
        assert consultations.consultation(existing).status == "CONFIRMED"
        for i, consultation_id in enumerate(ids, 1):
            [event] = consultations.events.get(consultation_id)
            assert event.correlation_id == f"pg-{i}" and consultations.consultation(consultation_id).reason == "check-up"
        assert len(consultations.recorder.select_notifications(0, 100)) == 1 + 1 + 6
    finally:
        for app in apps.values():
            app.close()
