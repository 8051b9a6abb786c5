"""Prometheus and Alertmanager watching the local deployment, with the committed configuration
(``deployment/prometheus/``): the ``clinic-local`` job's scrape settings with a file-based service discovery
of the deployment's processes standing in for Kubernetes discovery (each target labelled as the
``clinic-pods`` job labels a pod: ``app``, ``pod``, ``namespace``), the ``rabbitmq-local`` job's for the
broker's own metrics where it serves them, the committed rule files, and
Alertmanager with the committed routing, every receiver's webhook pointed at an ``AlertReceiver``.

An ``Overlay`` (tests only) compresses time so that what takes minutes in production takes seconds: the
scrape and evaluation intervals, every duration in the rules (an alert's ``for:``, each range ``[5m]``, a
group's interval) divided by one factor, and Alertmanager's grouping waits — rewritten as the committed
files are loaded: the rules themselves are never copied by hand."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from interfaces.local_deployment.servers import DeploymentError, free_port, program, wait_for

COMMITTED = Path(__file__).resolve().parents[2] / "deployment" / "prometheus"
LOCAL_JOB, BROKER_JOB = "clinic-local", "rabbitmq-local"
"""The committed jobs whose scrape settings the local discovery takes: the processes', the broker's."""
DISCOVERY_FILES = {LOCAL_JOB: "targets.json", BROKER_JOB: "broker.json"}
READY_SECONDS = 30.0


@dataclass(frozen=True)
class Overlay:
    """How a test compresses the committed configuration's time (the rules' logic stays as committed)."""

    speedup: int = 20
    """Every duration in the rules is divided by this: 5m windows become 15 s, a ``for: 5m`` 15 s."""
    scrape_interval: str = "1s"
    evaluation_interval: str = "1s"
    group_wait: str = "1s"
    group_interval: str = "1s"
    repeat_interval: str = "1h"

    def shorter(self, duration: str) -> str:
        """``duration`` (a Prometheus duration: ``5m``, ``3d``) divided by ``speedup``, in whole seconds."""
        seconds = sum(int(amount) * UNITS[unit] for amount, unit in DURATION.findall(duration))
        return f"{max(1, round(seconds / self.speedup))}s"

    def expression(self, expr: str) -> str:
        """``expr`` with each range (``[5m]``, a subquery's ``[1h:5m]``) shortened."""
        return RANGE.sub(lambda match: "[" + ":".join(self.shorter(part) for part in match.group(1).split(":")) + "]",
                         expr)


UNITS = {"ms": 0, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
RANGE = re.compile(r"\[(\d+[a-z]+(?::\d+[a-z]+)?)\]")


def scrape_targets(ports: Mapping[str, int]) -> list[dict[str, Any]]:
    """File-based service discovery of the processes (name → HTTP port): one target each, labelled as the
    Kubernetes job labels a pod."""
    return [{"targets": [f"127.0.0.1:{port}"], "labels": {"app": f"clinic-{name}", "pod": name, "namespace": "local"}}
            for name, port in sorted(ports.items())]


def broker_targets(metrics_port: int | None) -> list[dict[str, Any]]:
    """File-based discovery of the broker's metrics endpoint (none if it serves none)."""
    if metrics_port is None:
        return []
    return [{"targets": [f"127.0.0.1:{metrics_port}"], "labels": {"pod": "rabbitmq", "namespace": "local"}}]


def prometheus_config(workdir: Path, alertmanager: str, overlay: Overlay | None = None) -> dict[str, Any]:
    """The committed ``prometheus.yml`` with its local jobs discovering from files in ``workdir``
    (``DISCOVERY_FILES``), the committed rule files (as the overlay has them), and ``alertmanager``
    (``host:port``) to alert."""
    committed = yaml.safe_load((COMMITTED / "prometheus.yml").read_text())
    jobs = []
    for job in committed["scrape_configs"]:
        if job["job_name"] in DISCOVERY_FILES:
            local = {key: value for key, value in job.items() if key != "static_configs"}
            local["file_sd_configs"] = [{"files": [str(workdir / DISCOVERY_FILES[job["job_name"]])],
                                         "refresh_interval": "1s"}]
            jobs.append(local)
    timing = {} if overlay is None else {"scrape_interval": overlay.scrape_interval,
                                         "evaluation_interval": overlay.evaluation_interval}
    return {"global": committed["global"] | timing,
            "rule_files": [str(rule_file(COMMITTED / name, workdir, overlay)) for name in committed["rule_files"]],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
            "scrape_configs": jobs}


def rule_file(committed: Path, workdir: Path, overlay: Overlay | None) -> Path:
    """The committed rule file itself, or (with an overlay) the same rules with time compressed."""
    if overlay is None:
        return committed
    rules = yaml.safe_load(committed.read_text())
    for group in rules["groups"]:
        if "interval" in group:
            group["interval"] = overlay.shorter(group["interval"])
        for rule in group["rules"]:
            rule["expr"] = overlay.expression(str(rule["expr"]))
            if "for" in rule:
                rule["for"] = overlay.shorter(rule["for"])
    (workdir / "rules").mkdir(parents=True, exist_ok=True)
    path = workdir / "rules" / committed.name
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def alertmanager_config(receiver_url: str, overlay: Overlay | None = None) -> dict[str, Any]:
    """The committed routing, each receiver's webhooks sent to ``receiver_url/<receiver name>``."""
    config: dict[str, Any] = yaml.safe_load((COMMITTED / "alertmanager.yml").read_text())
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = f"{receiver_url}/{receiver['name']}"
    if overlay is not None:
        config["route"] |= {"group_wait": overlay.group_wait, "group_interval": overlay.group_interval,
                            "repeat_interval": overlay.repeat_interval}
    return config


@dataclass
class Notification:
    """One webhook Alertmanager delivered: the receiver it was routed to, and its alerts."""

    receiver: str
    status: str
    alerts: list[dict[str, Any]]


@dataclass
class AlertReceiver:
    """A webhook receiver for Alertmanager on a loopback port: keeps every notification (``/<receiver>``)."""

    notifications: list[Notification] = field(default_factory=list)
    on_notification: Callable[[Notification], object] | None = None
    """Told each notification as it arrives (``clinic observe`` prints it)."""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> AlertReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                receiver.received(Notification(self.path.strip("/"), body["status"], body["alerts"]))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="alert-receiver", daemon=True).start()
        return self

    def received(self, notification: Notification) -> None:
        with self._lock:
            self.notifications.append(notification)
        if self.on_notification is not None:
            self.on_notification(notification)

    def alerts(self, name: str, status: str, since: int = 0) -> list[tuple[str, dict[str, Any]]]:
        """``(receiver, alert)`` of each alert named ``name`` delivered with ``status`` (firing, resolved), in
        the notifications from number ``since`` on (``len(notifications)`` before a test provokes one)."""
        with self._lock:
            return [(n.receiver, alert) for n in self.notifications[since:] for alert in n.alerts
                    if alert["labels"].get("alertname") == name and alert["status"] == status]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class ObservabilityStack:
    """Prometheus and Alertmanager on free loopback ports, configured from the committed files."""

    workdir: Path
    receiver: AlertReceiver
    overlay: Overlay | None = None
    prometheus_port: int = field(default_factory=free_port)
    alertmanager_port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    def start(self, ports: Mapping[str, int], broker_metrics: int | None = None) -> ObservabilityStack:
        """Scrape the processes in ``ports`` (name → HTTP port) and the broker's metrics on port
        ``broker_metrics`` (if it serves them), and alert through Alertmanager."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write(DISCOVERY_FILES[BROKER_JOB], broker_targets(broker_metrics))
        self.discover(ports)
        manager = self.workdir / "alertmanager.yml"
        manager.write_text(yaml.safe_dump(alertmanager_config(self.receiver.url, self.overlay), sort_keys=False))
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(self.workdir, f"127.0.0.1:{self.alertmanager_port}",
                                                           self.overlay), sort_keys=False))
        self._spawn("alertmanager", _required("prometheus-alertmanager"), f"--config.file={manager}",
                    f"--storage.path={self.workdir / 'alertmanager-data'}",
                    f"--web.listen-address=127.0.0.1:{self.alertmanager_port}", "--cluster.listen-address=")
        self._spawn("prometheus", _required("prometheus"), f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                    f"--web.listen-address=127.0.0.1:{self.prometheus_port}")
        for url in (f"{self.alertmanager_url}/-/ready", f"{self.prometheus_url}/-/ready"):
            wait_for(partial(_answers, url), timeout=READY_SECONDS, what=f"{url} answering")
        return self

    def discover(self, ports: Mapping[str, int]) -> None:
        """What the file-based discovery finds now (Prometheus reads it again within a second)."""
        self._write(DISCOVERY_FILES[LOCAL_JOB], scrape_targets(ports))

    def _write(self, name: str, targets: list[dict[str, Any]]) -> None:
        path = self.workdir / name
        path.with_suffix(".tmp").write_text(json.dumps(targets, indent=2))
        path.with_suffix(".tmp").replace(path)  # whole, never half-written

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now."""
        url = f"{self.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
        if answer["status"] != "success":
            raise DeploymentError(f"Prometheus refused {expr!r}: {answer}")
        return list(answer["data"]["result"])

    def query_range(self, expr: str, minutes: float, step: str = "5s") -> list[dict[str, Any]]:
        """The series ``expr`` draws over the last ``minutes`` (as a dashboard panel over its time range)."""
        now = time.time()
        query = urllib.parse.urlencode({"query": expr, "start": now - minutes * 60, "end": now, "step": step})
        with urllib.request.urlopen(f"{self.prometheus_url}/api/v1/query_range?{query}", timeout=30) as response:
            answer = json.load(response)
        if answer["status"] != "success":
            raise DeploymentError(f"Prometheus refused {expr!r}: {answer}")
        return list(answer["data"]["result"])

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def _spawn(self, name: str, *command: str) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps its own descriptor
        with log:
            self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                   cwd=self.workdir))


def _required(name: str) -> str:
    found = program(name)
    if found is None:
        package = "prometheus-alertmanager" if "alertmanager" in name else "prometheus"
        raise DeploymentError(f"{name} is not installed; install it with: apt-get install -y {package}")
    return found


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False
