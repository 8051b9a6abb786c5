"""The product's local deployment refuses to start, saying why, when a server it needs does not answer."""

from __future__ import annotations

import pytest

from interfaces.local_deployment.deployment import deployed
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
