"""Jobs replicas as on separate hosts: each in its own network namespace, sharing only PostgreSQL (reached over
its namespace's link to the host) and the data folder (payloads and operator logs). The scenario is the one of
tests/test_replicas.py: 20 one-GPU operators on two GPUs, one replica SIGKILLed mid-run."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.helpers import required, serve_process
from tests.test_replicas import REPLICA_ENV, twenty_gpu_operators_one_replica_killed

NETWORK = "10.231"
"""Namespaces get 10.231.<n>.0/24 links; scripts/postgres trusts 10.231.0.0/16."""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def namespaces() -> Iterator[list[tuple[str, str, str]]]:
    """Two network namespaces, each with a veth link to the host: (namespace, host's address, its address)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        required("network namespaces need root and iproute2")
    tag = uuid.uuid4().hex[:6]
    made: list[tuple[str, str, str]] = []
    try:
        for index in (1, 2):
            name, outside, inside = f"claret-{tag}-{index}", f"cl{tag}{index}h", f"cl{tag}{index}n"
            subnet = f"{NETWORK}.{int(tag, 16) % 120 * 2 + index}"
            ip("netns", "add", name)
            made.append((name, f"{subnet}.1", f"{subnet}.2"))
            ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", name)
            ip("addr", "add", f"{subnet}.1/24", "dev", outside)
            ip("link", "set", outside, "up")
            ip("-n", name, "addr", "add", f"{subnet}.2/24", "dev", inside)
            ip("-n", name, "link", "set", inside, "up")
            ip("-n", name, "link", "set", "lo", "up")
        yield made
    finally:
        for name, _, _ in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)  # takes its veth pair along


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)
async def test_replicas_in_separate_network_namespaces_share_only_postgresql_and_data(
    tmp_path: Path, store: str, namespaces: list[tuple[str, str, str]]
) -> None:
    url = os.environ["CLARET_DATABASE_URL"]  # the test's database, on 127.0.0.1
    shared = tmp_path / "shared"
    with ExitStack() as stack:
        served = {}
        for replica, (namespace, host_address, address) in zip(("a", "b"), namespaces, strict=True):
            env = {
                **REPLICA_ENV,
                "CLARET_REPLICA": replica,
                "CLARET_DATABASE_URL": url.replace("127.0.0.1", host_address),  # over the namespace's own link
                "CLARET_PAYLOAD_DIR": str(shared / "payloads"),
                "CLARET_LOGS_DIR": str(shared / "logs"),
            }
            home = tmp_path / replica  # nothing else is shared: each has its own data dir
            served[replica] = stack.enter_context(
                serve_process(home, "--runtime", "sandbox", netns=(namespace, address), **env)
            )
        assert not any((tmp_path / replica / "claret.db").exists() for replica in "ab")
        await twenty_gpu_operators_one_replica_killed(served, url)
