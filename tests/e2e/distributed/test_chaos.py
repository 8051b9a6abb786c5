"""``clinic chaos`` at a size CI affords: every kind of fault once, then every invariant holds.

The run is the product's own (``interfaces/local_deployment/chaos.py``) on private PostgreSQL, Redis
and RabbitMQ servers: kill -9 of a worker, the database down, the registry down past the saga deadline,
a poison message, Redis down and the broker down, under two bookings a second through the gateway.
"""

from __future__ import annotations

from interfaces.local_deployment.chaos import FAULTS, render, run
from interfaces.local_deployment.servers import DeploymentError
from tests.private_servers import missing

SEED, MINUTES, EVERY = 3, 1.5, 8.0
"""A schedule with each kind of fault once (``test_chaos_schedule.py`` checks the schedule itself)."""


def test_a_short_chaos_run_injects_every_fault_and_every_invariant_holds():
    try:
        report = run(SEED, MINUTES, rate=2.0, every=EVERY, say=lambda line: None)
    except DeploymentError as error:
        if "not installed" in str(error):
            missing(str(error))
        raise
    assert {i.fault for i in report.injections} == set(FAULTS)
    assert report.accepted > 50 and report.outcomes.get("CONFIRMED", 0) > 0
    assert report.held, render(report)
