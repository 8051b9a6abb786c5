"""The product's local deployment refuses to start, saying why, when a server it needs does not answer; its
processes' logs read back as parsed JSON lines."""

from __future__ import annotations

import pytest

from interfaces.local_deployment.deployment import GATEWAY, LocalDeployment, deployed
from interfaces.local_deployment.servers import DeploymentError, Servers, free_port


def test_a_deployment_without_its_servers_is_refused_naming_each_missing_one(tmp_path):
    port = free_port()  # nothing listens there
    nowhere = Servers(postgres_port=port, amqp_url=f"amqp://guest:guest@127.0.0.1:{port}/",
                      redis_url=f"redis://127.0.0.1:{port}/0")

    with pytest.raises(DeploymentError) as refused, deployed(tmp_path, nowhere):
        pass

    message = str(refused.value)
    for server in ("PostgreSQL", "RabbitMQ", "Redis"):
        assert f"{server} at 127.0.0.1:{port} is unreachable" in message
    assert list(tmp_path.iterdir()) == []  # nothing was started or written


def test_the_processes_logs_are_read_back_as_json_lines_each_with_its_process(tmp_path):
    # given a deployment's log files (nothing started: only the names of its processes)
    deployment = LocalDeployment(tmp_path, "unused", Servers(), tracing=False)
    deployment.roles |= {"booking": ("booking", "all"), "consultations-api-1": ("consultations", "api"),
                         "registry": ("registry", "all")}  # the registry has logged nothing yet
    (tmp_path / "booking.log").write_text('{"event": "a", "correlation_id": "c-1"}\nTraceback (most recent call)\n'
                                          '\n[1, 2]\n{"event": "b"}\n{"event": "half wr')
    (tmp_path / "consultations-api-1.log").write_text('{"event": "c"}\n')
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "access.log").write_text('{"event": "POST /v1/consultations 202"}\n')
    (tmp_path / "gateway" / "error.log").write_text("2027/01/01 [notice] 1#1: start worker processes\n")
    (tmp_path / "other.log").write_text('{"event": "not the deployment\'s"}\n')
    # when they are read: each JSON object with its process and line number; other lines and a last line still
    # being written are skipped, nginx's error log is not read
    lines = deployment.log_lines()
    assert [(line.process, line.number, line.fields["event"]) for line in lines] == [
        ("booking", 1, "a"), ("booking", 5, "b"), ("consultations-api-1", 1, "c"),
        (GATEWAY, 1, "POST /v1/consultations 202")]
    assert lines[0].fields["correlation_id"] == "c-1"
    # and strictly, a line that is not a JSON object is an error naming it
    with pytest.raises(DeploymentError, match="booking.log:2 of booking is not a JSON object: Traceback"):
        deployment.log_lines(strict=True)
