"""``clinic observe``: its arguments, and how it prints what Alertmanager delivers (the stack it runs is the
live tier's: tests/e2e/distributed/test_observability_live.py)."""

from __future__ import annotations

import pytest

from interfaces.cli.main import build_parser
from interfaces.cli.observe import told
from interfaces.local_deployment.observability import Notification


def test_it_runs_until_stopped_or_for_the_minutes_asked():
    assert build_parser().parse_args(["observe"]).minutes is None
    assert build_parser().parse_args(["observe", "--minutes", "2.5"]).minutes == 2.5
    with pytest.raises(SystemExit):
        build_parser().parse_args(["observe", "--minutes", "-1"])


def test_each_alert_of_a_notification_is_a_line_saying_where_it_was_routed():
    alert = {"status": "firing", "labels": {"alertname": "ClinicServiceNotReady", "severity": "critical",
                                            "service": "booking", "check": "postgres"},
             "annotations": {"summary": "booking's postgres check fails on every replica"}}
    line = told(Notification("pager", "firing", [alert, alert | {"status": "resolved"}]))
    first, second = line.splitlines()
    assert first.startswith("FIRING   ClinicServiceNotReady") and second.startswith("RESOLVED ")
    assert "'service': 'booking'" in first and "[critical → pager]" in first and first.endswith("every replica")
