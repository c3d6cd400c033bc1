"""`docker stack deploy -c docker-compose.yml` on a real three-node swarm (tests/swarm/cluster.py), as
docs/swarm.md says to run it: Claret's services as swarm services on the manager, the jobs service with the
swarm runtime and the manager's engine. The official client's combined flow runs through the stack's published
ports; its operators run as one-shot swarm services on the workers, Claret's placement, writing into the data
folder every node has at the same path; `docker stack rm` leaves nothing of the stack."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.jobs.runtimes.base import INSTANCE_LABEL, OPERATOR_LABEL
from tests.compose_helpers import (
    COMPOSE_FILE,
    claret_image_built,
    compose_environment,
    console_page,
    run,
    wait_healthy,
)
from tests.helpers import free_port
from tests.swarm.cluster import SwarmCluster
from tests.test_official_client import check_combined_flow

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

SERVICES = ("pipelines", "payloads", "jobs", "console")
STACK_LABEL = "com.docker.stack.namespace"
GONE_WITHIN = 60.0
"""`docker stack rm` returns at once; Swarm stops the containers and removes the network after."""


@dataclass
class Stack:
    name: str
    """The stack's name, and the platform instance of its jobs service."""
    data: Path
    addresses: dict[str, str]
    """Each service's published port on the manager."""
    started: float


@contextmanager
def deployed(image: str, root: Path) -> Iterator[Stack]:
    """`docker stack deploy -c docker-compose.yml` with the swarm runtime, under a name, data folder and free host
    ports of its own; healthy; then `docker stack rm`, after which nothing of the stack may be left."""
    name = f"claret-{uuid.uuid4().hex[:8]}"
    ports = {service: free_port() for service in SERVICES}
    published = {f"CLARET_{service.upper()}_PORT": str(port) for service, port in ports.items()}
    env = compose_environment(image, root, name, CLARET_RUNTIME="swarm", CLARET_QUEUE="local", **published)
    addresses = {service: f"127.0.0.1:{port}" for service, port in ports.items()}
    stack = Stack(name=name, data=root / "data", addresses=addresses, started=time.time())
    try:
        # never: there is no registry to ask for the image's digest; the services run where the image is
        run("docker", "stack", "deploy", "--resolve-image", "never", "-c", str(COMPOSE_FILE), name, env=env)
        containers = ("docker", "ps", "-q", "--filter", f"label={STACK_LABEL}={name}")
        wait_healthy(lambda: run(*containers).split(), expected=len(SERVICES), logs=lambda: describe(name))
        yield stack
    finally:
        remove(name)


def describe(name: str) -> str:
    """The stack's tasks (with Swarm's reason when one failed) and the tail of each service's log."""
    commands = [
        ["docker", "stack", "ps", "--no-trunc", name],
        *(["docker", "service", "logs", "--tail", "20", f"{name}_{service}"] for service in SERVICES),
    ]
    results = (subprocess.run(command, capture_output=True, text=True) for command in commands)
    return "\n".join(result.stdout + result.stderr for result in results)


def remove(name: str) -> None:
    """`docker stack rm`, then until none of its services, networks or containers (on the manager, the only
    node it runs on) is left."""
    run("docker", "stack", "rm", name)
    label = f"label={STACK_LABEL}={name}"
    deadline = time.monotonic() + GONE_WITHIN
    while True:
        found = {
            "services": run("docker", "service", "ls", "-q", "--filter", label).split(),
            "networks": run("docker", "network", "ls", "-q", "--filter", label).split(),
            "containers": run("docker", "ps", "-aq", "--filter", label).split(),
        }
        if not any(found.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left by `docker stack rm` after {GONE_WITHIN:.0f} s: {found}")
        time.sleep(0.5)


def operators_run(data: Path) -> dict[str, tuple[str, str]]:
    """The operators that ran, by the jobs service's ledger: name -> (node, runtime id)."""
    with closing(sqlite3.connect(f"file:{data / 'claret.db'}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT name, node, runtime_id FROM operators WHERE runtime_id IS NOT NULL").fetchall()
    assert len(rows) == len({name for name, _, _ in rows}), rows  # the flow's second job never ran
    return {name: (node, runtime_id) for name, node, runtime_id in rows}


def ran_jobs(data: Path) -> set[str]:
    """The jobs whose operators ran, by the jobs service's ledger."""
    with closing(sqlite3.connect(f"file:{data / 'claret.db'}?mode=ro", uri=True)) as db:
        return {job_id for (job_id,) in db.execute("SELECT job_id FROM operators WHERE runtime_id IS NOT NULL")}


def events(swarm: SwarmCluster, stack: Stack, *filters: str) -> list[dict[str, str]]:
    """What every node's engine reported since the stack was deployed: each event's action and attributes, with
    the id of the node it came from."""
    found = []
    for node in swarm.nodes:
        window = ("--since", f"{stack.started - 1:.3f}", "--until", f"{time.time():.3f}")
        out = swarm.docker(node, "events", *window, *(f"--filter={f}" for f in filters), "--format", "{{json .}}")
        for line in out.splitlines():
            event = json.loads(line)
            actor = event["Actor"]
            found.append({"node": node.node_id, "action": event["Action"], "id": actor["ID"], **actor["Attributes"]})
    return found


def test_official_client_flow_through_the_stack_on_the_swarm(
    swarm: SwarmCluster, official_python: Path, tmp_path: Path
) -> None:
    with claret_image_built() as image, deployed(image, tmp_path / "stack") as stack:
        # Claret's services on the manager: the jobs service drives the swarm through the manager's engine
        running = run("docker", "stack", "ps", "--filter", "desired-state=running", "--format", "{{.Node}}", stack.name)
        assert sorted(running.split()) == [swarm.manager.name] * len(SERVICES), running

        address = stack.addresses
        check_combined_flow(official_python, tmp_path, address["pipelines"], address["jobs"], address["payloads"])

        # Claret placed each operator on a worker (its ledger) and ran it as a swarm service: the task's
        # container ran on that worker's engine, and the manager saw the service created and removed
        ran = operators_run(stack.data)
        assert sorted(ran) == ["copier", "shouter"], ran
        assert {node for node, _ in ran.values()} <= {worker.node_id for worker in swarm.workers}, ran
        containers = events(swarm, stack, "type=container", f"label={INSTANCE_LABEL}={stack.name}")
        services = {(e["action"], e["id"]) for e in events(swarm, stack, "type=service")}
        for operator, (node, service) in ran.items():
            ours = [event for event in containers if event[OPERATOR_LABEL] == operator]
            where = {(e["node"], e["com.docker.swarm.node.id"], e["com.docker.swarm.service.id"]) for e in ours}
            assert where == {(node, node, service)}, ours
            assert {"create", "start", "die"} <= {e["action"] for e in ours}, ours
            assert {e["image"] for e in ours} == {"busybox:latest"}, ours
            assert {("create", service), ("remove", service)} <= services, services
        instance = f"label={INSTANCE_LABEL}={stack.name}"
        assert run("docker", "service", "ls", "-q", "--filter", instance) == ""
        # ... writing into the data folder, at the path every node has
        outputs = list(stack.data.glob("payloads/*/operators/shouter/input-2.txt.upper"))
        assert len(outputs) == 1
        assert outputs[0].read_bytes() == (tmp_path / "input-2.txt").read_bytes().upper()
        # the console, in the stack too, lists the job through the services' own addresses
        (job_id,) = ran_jobs(stack.data)
        assert f"/jobs/{job_id}" in console_page(address["console"], "/jobs")
