"""What the live observability tier and ``clinic observe`` run, from the committed files: Prometheus's
configuration (the committed job with a file-based discovery, the committed rules), the rules with time
compressed by the test overlay (nothing but durations changed), and Alertmanager's routing with the
receivers pointed elsewhere — each checked by the servers' own tools (promtool, amtool)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from interfaces.local_deployment.observability import (
    COMMITTED,
    DISCOVERY_FILES,
    Overlay,
    alertmanager_config,
    broker_targets,
    prometheus_config,
    rule_file,
    scrape_targets,
)
from tests import services

RULES = sorted((COMMITTED / "rules").glob("*.yml"))


def check(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_committed_alertmanager_routing_passes_amtool():
    check(services.require_binary("amtool"), "check-config", str(COMMITTED / "alertmanager.yml"))


@pytest.mark.parametrize("overlay", [None, Overlay(), Overlay(speedup=720, scrape_interval="200ms",
                                                               evaluation_interval="200ms")],
                         ids=["committed", "overlay", "overlay-720"])
def test_the_generated_prometheus_configuration_passes_promtool(tmp_path, overlay):
    config = prometheus_config(tmp_path, "127.0.0.1:9093", overlay)
    for name in DISCOVERY_FILES.values():
        (tmp_path / name).write_text("[]")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    check(services.require_binary("promtool"), "check", "config", str(tmp_path / "prometheus.yml"))


def test_the_local_jobs_are_the_committed_ones_discovering_from_files(tmp_path):
    committed = yaml.safe_load((COMMITTED / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in committed["scrape_configs"]}
    locals_ = {job["job_name"]: job for job in prometheus_config(tmp_path, "127.0.0.1:9093")["scrape_configs"]}
    assert set(locals_) == set(DISCOVERY_FILES) == {"clinic-local", "rabbitmq-local"}
    for name, local in locals_.items():
        assert {key: value for key, value in local.items() if key != "file_sd_configs"} == \
            {key: value for key, value in jobs[name].items() if key != "static_configs"}
        assert local["file_sd_configs"][0]["files"] == [str(tmp_path / DISCOVERY_FILES[name])]
    assert prometheus_config(tmp_path, "x:1")["rule_files"] == [str(COMMITTED / name) for name in committed["rule_files"]]


def test_the_broker_jobs_ask_for_each_queues_ready_messages_and_consumers():
    committed = yaml.safe_load((COMMITTED / "prometheus.yml").read_text())
    for job in (job for job in committed["scrape_configs"] if job["job_name"].startswith("rabbitmq")):
        assert job["metrics_path"] == "/metrics/detailed"
        assert job["params"] == {"family": ["queue_coarse_metrics", "queue_consumer_count"]}


def test_each_process_is_labelled_as_the_kubernetes_job_labels_a_pod():
    assert scrape_targets({"booking-api": 8004}) == [
        {"targets": ["127.0.0.1:8004"], "labels": {"app": "clinic-booking-api", "pod": "booking-api", "namespace": "local"}}]
    assert broker_targets(None) == []
    assert broker_targets(15692) == [{"targets": ["127.0.0.1:15692"], "labels": {"pod": "rabbitmq", "namespace": "local"}}]


@pytest.mark.parametrize(("duration", "shorter"), [("5m", "15s"), ("1h", "180s"), ("3d", "12960s"), ("10s", "1s")])
def test_the_overlay_divides_every_duration(duration, shorter):
    assert Overlay(speedup=20).shorter(duration) == shorter


@pytest.mark.parametrize(("duration", "shorter"), [("6h", "30s"), ("3d", "360s"), ("1h", "5s"), ("5m", "1s")])
def test_a_further_compression_keeps_a_second_at_least(duration, shorter):
    assert Overlay(speedup=720).shorter(duration) == shorter


@pytest.mark.parametrize("path", RULES, ids=lambda path: path.name)
def test_the_overlay_changes_nothing_of_a_rule_but_its_durations(tmp_path, path):
    committed = yaml.safe_load(path.read_text())
    overlaid = yaml.safe_load(rule_file(path, tmp_path, Overlay()).read_text())
    def durations_out(text: str) -> str:
        return re.sub(r"\[\d+[a-z]+(:\d+[a-z]+)?\]", "[_]", text)

    for group, ours in zip(committed["groups"], overlaid["groups"], strict=True):
        assert group["name"] == ours["name"] and len(group["rules"]) == len(ours["rules"])
        for rule, our in zip(group["rules"], ours["rules"], strict=True):
            assert {k: v for k, v in rule.items() if k not in ("expr", "for")} == \
                {k: v for k, v in our.items() if k not in ("expr", "for")}
            assert durations_out(str(rule["expr"])) == durations_out(str(our["expr"]))
            assert ("for" in rule) == ("for" in our)
    check(services.require_binary("promtool"), "check", "rules", str(tmp_path / "rules" / path.name))


def test_alertmanager_keeps_the_committed_routing_and_sends_every_receiver_to_ours(tmp_path):
    committed = yaml.safe_load((COMMITTED / "alertmanager.yml").read_text())
    config = alertmanager_config("http://127.0.0.1:1", Overlay())
    assert config["route"]["routes"] == committed["route"]["routes"]
    assert config["inhibit_rules"] == committed["inhibit_rules"]
    assert [hook["url"] for receiver in config["receivers"] for hook in receiver["webhook_configs"]] == [
        f"http://127.0.0.1:1/{receiver['name']}" for receiver in committed["receivers"]]
    path = Path(tmp_path / "alertmanager.yml")
    path.write_text(yaml.safe_dump(config))
    check(services.require_binary("amtool"), "check-config", str(path))
