"""The test swarm itself (tests/swarm/cluster.py): nodes, GPUs as generic resources, bind mounts, draining,
overlay networking between workers, and a worker whose engine is killed and restarted."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.swarm.cluster import Node, SwarmCluster

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

ENDED = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned", "remove"})


def service(swarm: SwarmCluster, script: str, *options: str) -> str:
    """A busybox service running ``script`` (``sh -c``), never restarted; its name."""
    name = f"claret-test-{uuid.uuid4().hex[:8]}"
    create = ("service", "create", "--detach", "--quiet", "--name", name, "--restart-condition", "none")
    swarm.docker(swarm.manager, *create, *options, "busybox:latest", "sh", "-c", script)
    return name


def task(swarm: SwarmCluster, name: str, done: Callable[[str], bool], timeout: float = 60) -> tuple[str, str]:
    """Poll the service's only task until ``done(state)``: (state, node id); its error if it ends otherwise."""
    deadline = time.monotonic() + timeout
    seen = "no task"
    while time.monotonic() < deadline:
        for task_id in swarm.docker(swarm.manager, "service", "ps", "--quiet", "--no-trunc", name).split()[:1]:
            status = json.loads(swarm.docker(swarm.manager, "inspect", "--format", "{{json .}}", task_id))
            state, node_id, seen = status["Status"]["State"], status.get("NodeID", ""), json.dumps(status["Status"])
            if done(state):
                return state, node_id
            if state in ENDED:
                raise AssertionError(f"task of {name} ended: {seen}")
        time.sleep(0.1)
    raise AssertionError(f"task of {name} after {timeout} s: {seen}")


def job(swarm: SwarmCluster, out: Path, script: str, *options: str) -> str:
    """Run ``script`` as a replicated-job with ``out`` bind-mounted at /out; the node id it completed on."""
    name = service(swarm, script, "--mode", "replicated-job", "--mount", f"type=bind,src={out},dst=/out", *options)
    try:
        return task(swarm, name, lambda state: state == "complete")[1]
    finally:
        swarm.docker(swarm.manager, "service", "rm", name)


def gpu_of_a_job(swarm: SwarmCluster, out: Path, *options: str) -> tuple[Node, str]:
    """A job asking for one GPU: the worker it ran on and the GPU id it was granted."""
    node_id = job(swarm, out, 'echo "$DOCKER_RESOURCE_GPU" > /out/gpu', "--generic-resource", "gpu=1", *options)
    worker = next(worker for worker in swarm.workers if worker.node_id == node_id)
    return worker, (out / "gpu").read_text().strip()


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A host directory tasks write into through a bind mount (same path on every node: one filesystem)."""
    return tmp_path


def test_three_nodes_are_ready_and_the_workers_declare_their_gpus(swarm: SwarmCluster) -> None:
    assert len(swarm.nodes) == 3 and len({node.node_id for node in swarm.nodes}) == 3
    assert swarm.states() == {node.node_id: ("Ready", "Active") for node in swarm.nodes}
    for node in swarm.nodes:
        description = json.loads(swarm.docker(swarm.manager, "node", "inspect", "--format", "{{json .}}", node.node_id))
        declared = description["Description"]["Resources"].get("GenericResources") or []
        assert sorted(resource["NamedResourceSpec"]["Value"] for resource in declared) == sorted(node.gpus)
        assert all(resource["NamedResourceSpec"]["Kind"] == "gpu" for resource in declared)
        assert description["Description"]["Hostname"] == node.name
    assert [len(worker.gpus) for worker in swarm.workers] == [2, 2] and swarm.manager.gpus == ()


def test_a_gpu_job_runs_on_a_worker_and_writes_its_grant_to_a_host_directory(swarm: SwarmCluster, out: Path) -> None:
    worker, gpu = gpu_of_a_job(swarm, out)
    assert gpu in worker.gpus


def test_a_drained_worker_gets_no_task_and_is_active_again_after_activate(swarm: SwarmCluster, out: Path) -> None:
    first, second = swarm.workers
    swarm.drain(first)
    try:
        swarm.wait_for([first], availability="Drain")
        assert swarm.states()[first.node_id] == ("Ready", "Drain")
        for _ in range(3):
            worker, gpu = gpu_of_a_job(swarm, out)
            assert (worker, gpu in second.gpus) == (second, True)
    finally:
        swarm.activate(first)
    swarm.wait_ready(first)
    worker, _ = gpu_of_a_job(swarm, out, "--constraint", f"node.id=={first.node_id}")
    assert worker == first


def test_tasks_on_two_workers_talk_over_an_overlay_network(swarm: SwarmCluster, out: Path) -> None:
    """What a stack needs: the workers reach each other (dnsrr: this kernel has no IPVS for virtual IPs)."""
    first, second = swarm.workers
    network = f"claret-test-{uuid.uuid4().hex[:8]}"
    swarm.docker(swarm.manager, "network", "create", "--driver", "overlay", network)
    placement = ("--network", network, "--endpoint-mode", "dnsrr", "--constraint", f"node.id=={first.node_id}")
    server = service(swarm, "while true; do echo hello from $(hostname) | nc -l -p 8080; done", *placement)
    try:
        task(swarm, server, lambda state: state == "running")
        script = f"for i in $(seq 50); do nc -w 2 {server} 8080 > /out/reply && break; sleep 0.2; done"
        assert job(swarm, out, script, "--network", network, "--constraint", f"node.id=={second.node_id}") == (
            second.node_id
        )
        assert (out / "reply").read_text().startswith("hello from ")
    finally:
        swarm.docker(swarm.manager, "service", "rm", server)
        remove_network(swarm, network)


def remove_network(swarm: SwarmCluster, network: str) -> None:
    """Once the service's tasks are gone from every node, the manager lets its network go."""
    deadline = time.monotonic() + 30
    while network in swarm.docker(swarm.manager, "network", "ls", "--format", "{{.Name}}").split():
        try:
            swarm.docker(swarm.manager, "network", "rm", network)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def lost(swarm: SwarmCluster) -> Iterator[Node]:
    """The first worker, restarted after the test whatever it did to it."""
    worker = swarm.workers[0]
    yield worker
    if swarm.states().get(worker.node_id, ("Down",))[0] != "Ready":
        swarm.restart_engine(worker)
    swarm.wait_ready()


def test_a_killed_worker_loses_its_tasks_is_down_and_serves_again_after_a_restart(
    swarm: SwarmCluster, lost: Node, out: Path, record_property: Callable[[str, object], None]
) -> None:
    name = service(swarm, "sleep 600", "--generic-resource", "gpu=1", "--constraint", f"node.id=={lost.node_id}")
    try:
        task(swarm, name, lambda state: state == "running")
        container = swarm.docker(lost, "ps", "--quiet", "--filter", f"label=com.docker.swarm.service.name={name}")
        pid = int(swarm.docker(lost, "inspect", "--format", "{{.State.Pid}}", container.strip()))
        assert not gone(pid)
        swarm.kill_engine(lost)
        assert gone(pid)  # its tasks died with it, as with a host losing power
        down = swarm.wait_down(lost, timeout=20)
        record_property("seconds_until_down", round(down, 2))
        print(f"the manager saw the killed worker Down after {down:.1f} s")
        assert swarm.states()[swarm.workers[1].node_id] == ("Ready", "Active")
    finally:
        swarm.docker(swarm.manager, "service", "rm", name)
    swarm.restart_engine(lost)
    swarm.wait_ready(lost)
    worker, gpu = gpu_of_a_job(swarm, out, "--constraint", f"node.id=={lost.node_id}")
    assert worker == lost and gpu in lost.gpus
