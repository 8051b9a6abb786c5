"""A consultation command loads its aggregate once: the caller's check and the expected version are
judged on the consultation the command then changes."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from application.common import VersionConflictError
from application.consultations import ConsultationsApplication
from application.views import ConsultationView
from domain.consultation import Consultation

START = datetime(2027, 1, 5, 9, tzinfo=UTC)


class Refused(Exception):
    pass


@pytest.fixture
def app():
    app = ConsultationsApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


@pytest.fixture
def confirmed(app):
    consultation = Consultation(patient_id=uuid4(), doctor_id=uuid4(), start=START, reason="check-up")
    consultation.confirm()
    app.save(consultation)
    return consultation.id


@pytest.fixture
def loads(app, monkeypatch):
    counted = []
    get = app.repository.get
    monkeypatch.setattr(app.repository, "get", lambda *a, **kw: counted.append(a[0]) or get(*a, **kw))
    return counted


def test_cancel_loads_the_consultation_once_and_checks_the_caller_on_it(app, confirmed, loads):
    seen: list[ConsultationView] = []
    app.cancel(confirmed, "ill", by_patient=True, expected_version=2, check=seen.append)
    assert loads == [confirmed]
    assert [(v.consultation_id, v.version, v.status) for v in seen] == [(confirmed, 2, "CONFIRMED")]
    assert app.consultation(confirmed).status == "CANCELLED"


def test_a_refusing_check_changes_nothing(app, confirmed):
    def refuse(_: ConsultationView) -> None:
        raise Refused

    with pytest.raises(Refused):
        app.cancel(confirmed, "ill", by_patient=True, check=refuse)
    with pytest.raises(Refused):
        app.add_note(confirmed, "dr", "fine", check=refuse)
    assert app.consultation(confirmed).version == 2


def test_cancel_at_another_version_is_a_conflict_and_changes_nothing(app, confirmed):
    with pytest.raises(VersionConflictError, match="at version 2, not 1"):
        app.cancel(confirmed, "ill", by_patient=False, expected_version=1)
    assert app.consultation(confirmed).status == "CONFIRMED"


def test_a_note_loads_the_consultation_once(app, confirmed, loads):
    app.add_note(confirmed, "dr", "fine", check=lambda view: None)
    assert loads == [confirmed]
