"""The ``swarm`` fixture: a real three-node Docker Swarm (tests/swarm/cluster.py) for a module's tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.swarm.cluster import SwarmCluster, swarm_cluster, unsupported


@pytest.fixture(scope="module")
def swarm(docker_engine: None) -> Iterator[SwarmCluster]:
    """The main engine as manager and two workers with two fake GPUs each, for one module's tests.

    Per module, not per session: the main engine is a swarm manager only while swarm tests run, never under
    the rest of the suite. Skipped on a machine that cannot host it (not root, iproute2 or util-linux
    missing), failed there in CI."""
    reason = unsupported()
    if reason and os.environ.get("CI"):
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)
    with swarm_cluster() as cluster:
        yield cluster
