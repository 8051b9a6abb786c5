"""The distributed deployment as a module-scoped fixture (the deployment itself: cluster.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.distributed.cluster import DEADLINE_SECONDS, Cluster, deployed, eventually, free_port

__all__ = ["DEADLINE_SECONDS", "Cluster", "eventually", "free_port"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    with deployed(tmp_path_factory.mktemp("cluster")) as deployment:
        yield deployment
