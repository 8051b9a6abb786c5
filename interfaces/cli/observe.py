"""``clinic observe``: the distributed deployment on private servers, watched by Prometheus and Alertmanager
with the committed configuration (``deployment/prometheus/``), for people: it prints where each is, then each
alert notification as Alertmanager delivers it, until Ctrl-C (or ``--minutes``)."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable

from interfaces.local_deployment.deployment import deployed
from interfaces.local_deployment.observability import AlertReceiver, Notification, ObservabilityStack
from interfaces.local_deployment.private_servers import private_servers, scratch
from interfaces.local_deployment.servers import DeploymentError


def run_observe(args: argparse.Namespace) -> int:
    try:
        observe(args.minutes, say=lambda line: print(line, flush=True))
    except DeploymentError as error:
        print(f"clinic: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


def observe(minutes: float | None, say: Callable[[str], object] = print) -> None:
    """Deploy, watch, print; return after ``minutes`` (``None``: wait for Ctrl-C)."""
    receiver = AlertReceiver(on_notification=lambda notification: say(told(notification))).start()
    with scratch("clinic-observe-") as root, private_servers(broker_metrics=True) as servers, \
            deployed(root, servers.servers, tracing=False) as deployment:
        stack = ObservabilityStack(root / "observability", receiver)
        try:
            stack.start(deployment.ports, servers.rabbitmq.metrics_port)
            user, password = deployment.operator("ops", "ADMIN")
            say(f"gateway       {deployment.base}  (the API; the console at {deployment.base}/console, "
                f"sign in as {user} / {password})")
            say(f"prometheus    {stack.prometheus_url}  (the committed rules at {stack.prometheus_url}/alerts, "
                f"the targets at {stack.prometheus_url}/targets)")
            say(f"alertmanager  {stack.alertmanager_url}  (the committed routing; notifications print below)")
            say("Ctrl-C stops everything" if minutes is None else f"stopping in {minutes:g} min")
            threading.Event().wait(None if minutes is None else minutes * 60)
        finally:
            stack.stop()
            receiver.stop()


def told(notification: Notification) -> str:
    """One line per alert of a notification: its status, name, labels and summary, and where it was routed."""
    return "\n".join(
        f"{alert['status'].upper():8} {alert['labels'].get('alertname')} "
        f"{ {k: v for k, v in alert['labels'].items() if k not in ('alertname', 'severity')} } "
        f"[{alert['labels'].get('severity')} → {notification.receiver}] {alert['annotations'].get('summary', '')}"
        for alert in notification.alerts)
