"""The relay's position lives in the application's own store and survives a restart (no broker)."""

from __future__ import annotations

import pytest

from application.bootstrap import migrate
from application.consultations import ConsultationsApplication
from infrastructure.messaging.relay import TrackingPosition
from tests.conftest import settings_for


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "sqlalchemy"])
def test_the_relay_position_survives_a_restart_of_the_application(backend, tmp_path, request):
    # given a relay position saved in the store of the consultations context
    settings = settings_for(backend, tmp_path, request)
    migrate(settings)
    app = ConsultationsApplication(env=settings.eventsourcing_env("Consultations", create_table=False))
    TrackingPosition(app).save(3)
    TrackingPosition(app).save(5)
    app.close()

    # when the application starts again
    app = ConsultationsApplication(env=settings.eventsourcing_env("Consultations", create_table=False))
    position = TrackingPosition(app)

    # then the position is the highest saved; saving it again (a second relay) changes nothing
    assert position.get() == 5
    position.save(5)
    assert position.get() == 5
    # and no follower mistakes it for a leader's position
    assert app.recorder.max_tracking_id("Consultations") is None
    app.close()


def test_a_new_relay_starts_at_the_beginning(tmp_path, request):
    settings = settings_for("sqlite", tmp_path, request)
    migrate(settings)
    app = ConsultationsApplication(env=settings.eventsourcing_env("Consultations"))
    assert TrackingPosition(app).get() == 0
    app.close()
