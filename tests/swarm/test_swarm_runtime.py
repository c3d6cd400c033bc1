"""The swarm runtime on a real three-node swarm (tests/swarm/cluster.py): the main engine is the manager, two
workers in network namespaces declare two fake GPU ids each. Claret runs in this process with
``runtime="swarm"`` against the manager; its operators run as one-shot Swarm services on the workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from claret.errors import ClientError
from protos.nvidia.clara.platform import jobs_pb2 as pb
from tests.jobs_flow import Platform, one_operator, serving
from tests.swarm.cluster import MANAGER_ADDRESS, Node, SwarmCluster
from tests.test_replicas import intervals_overlap

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

RUNNING = pb.JOB_OPERATOR_STATUS_RUNNING
DOCKER0 = "172.17.0.1"
"""The main engine's default bridge, where a swarm task with no network of its own lands on the manager."""

RECORDING_GPU_OPERATOR = """api-version: 0.4.0
name: swarm-gpu
operators:  # /proc/uptime: one clock for every container on the machine, in busybox's hundredths of a second
- name: op
  container:
    image: busybox
    command: ["sh", "-c", "echo start $(cut -d' ' -f1 /proc/uptime) $NVIDIA_VISIBLE_DEVICES $(hostname)
      >> /output/record; echo hello from $NVIDIA_VISIBLE_DEVICES; sleep {sleep};
      echo end $(cut -d' ' -f1 /proc/uptime) >> /output/record"]
  requests: {{gpu: {gpus}, cpu: 0, memory: 16}}
  output: [{{path: /output}}]
"""


def gpu_pipeline(sleep: float = 0.5, gpus: int = 1) -> str:
    return RECORDING_GPU_OPERATOR.format(sleep=sleep, gpus=gpus)


def services_left(swarm: SwarmCluster) -> list[str]:
    listing = swarm.docker(swarm.manager, "service", "ls", "--filter", "label=claret.job", "--format", "{{.ID}}")
    return sorted(listing.split())


def networks_left(swarm: SwarmCluster) -> list[str]:
    listing = swarm.docker(swarm.manager, "network", "ls", "--filter", "label=claret.job", "--format", "{{.Name}}")
    return sorted(listing.split())


@pytest.fixture
async def clara(tmp_path: Path, swarm: SwarmCluster) -> AsyncIterator[Platform]:
    async with serving(tmp_path, runtime="swarm") as platform:
        yield platform
    assert services_left(swarm) == []  # whatever a test did, no operator's service outlives the platform


async def run_gpu_jobs(clara: Platform, count: int, sleep: float) -> dict[str, list[list[str]]]:
    """Start ``count`` one-GPU jobs at once; every one ends HEALTHY; each job's record lines, split."""
    pipeline = await clara.pipeline(gpu_pipeline(sleep))
    jobs = [await clara.job(pipeline, name=f"gpu {i}") for i in range(count)]
    started = await asyncio.gather(*(clara.start(job.job_id.value) for job in jobs))
    assert all(reply.header.code == 0 for reply in started), [list(r.header.messages) for r in started]
    finals = await asyncio.gather(*(clara.wait_stopped(job.job_id.value, within=120) for job in jobs))
    assert all(f.status == pb.JOB_STATUS_HEALTHY for f in finals), [list(f.messages) for f in finals]
    records = {}
    for job in jobs:
        text = (await clara.download(job.payload_id.value, "/operators/op/record")).decode()
        records[job.job_id.value] = [line.split() for line in text.splitlines()]
    return records


async def started_record(
    clara: Platform, payload_id: str, name: str = "/operators/op/record", within: float = 60
) -> str:
    """The file ``name`` of the payload once the operator wrote it (RUNNING is recorded before its task runs)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(ClientError):
            if record := (await clara.download(payload_id, name)).decode():
                return record
        await asyncio.sleep(0.1)
    raise AssertionError(f"the operator of payload {payload_id} wrote no {name} within {within} s")


async def test_twenty_gpu_operators_spread_over_both_workers_never_two_on_one_gpu(
    clara: Platform, swarm: SwarmCluster
) -> None:
    records = await run_gpu_jobs(clara, 20, sleep=0.5)

    gpus_of = {worker.name: set(worker.gpus) for worker in swarm.workers}
    spans: dict[str, list[tuple[float, float]]] = {}
    hosts = set()
    for lines in records.values():
        (start,) = [line for line in lines if line[0] == "start"]
        (end,) = [line for line in lines if line[0] == "end"]
        _, began, visible, host = start
        assert visible in gpus_of[host], (start, gpus_of)  # the ledger granted a GPU of the node it ran on
        spans.setdefault(visible, []).append((float(began), float(end[1])))
        hosts.add(host)
    assert hosts == set(gpus_of)  # spread over both workers
    assert sum(len(s) for s in spans.values()) == 20
    assert not any(intervals_overlap(s) for s in spans.values()), spans
    assert services_left(swarm) == []  # each service removed once its operator ended


async def test_a_variable_holding_a_template_reaches_the_operator_as_written(clara: Platform) -> None:
    """Swarm renders Go templates in a service's environment: an operator's variable must not read the node."""
    variables = "  variables: {SNEAKY: '{{.Node.ID}}'}\n  input:"
    text = one_operator("echo $SNEAKY > /output/seen").replace("  input:", variables)
    pipeline = await clara.pipeline(text)
    job = await clara.job(pipeline)
    await clara.start(job.job_id.value)
    final = await clara.wait_stopped(job.job_id.value, within=60)
    assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
    assert await clara.download(job.payload_id.value, "/operators/op/seen") == b"{{.Node.ID}}\n"


async def test_a_pipeline_service_is_refused_naming_the_runtimes_that_run_them(clara: Platform) -> None:
    served = one_operator("true").replace(
        "  input:", "  services:\n  - name: keeper\n    container: {image: busybox, command: [sleep, '600']}\n  input:"
    )
    job = await clara.job(await clara.pipeline(served))
    await clara.start(job.job_id.value)
    final = await clara.wait_stopped(job.job_id.value, within=30)
    assert final.status == pb.JOB_STATUS_FAULTED
    assert "the swarm runtime does not run pipeline services yet: use the docker or sandbox" in str(final.messages)


async def test_an_operator_no_node_can_hold_is_refused(clara: Platform) -> None:
    pipeline = await clara.pipeline(gpu_pipeline(gpus=3))
    job = await clara.job(pipeline)
    refused = await clara.start(job.job_id.value)
    assert refused.header.code < 0
    assert "needs 3 GPUs; the largest node has 2" in " ".join(refused.header.messages)


async def test_logs_stream_from_the_node_into_the_job(clara: Platform) -> None:
    pipeline = await clara.pipeline(gpu_pipeline(sleep=0.1))
    job = await clara.job(pipeline)
    await clara.start(job.job_id.value)
    final = await clara.wait_stopped(job.job_id.value, within=60)
    assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
    (line,) = await clara.logs(job.job_id.value, "op")
    assert line.startswith("hello from GPU-w")


async def test_a_fast_writer_s_log_arrives_whole_and_in_order(clara: Platform) -> None:
    """The live stream may end before the output does; what it missed is read again at the end."""
    job = await clara.job(await clara.pipeline(one_operator("seq 1 5000; echo done")))
    await clara.start(job.job_id.value)
    final = await clara.wait_stopped(job.job_id.value, within=60)
    assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
    assert await clara.logs(job.job_id.value, "op") == [*map(str, range(1, 5001)), "done"]


async def test_cancel_leaves_no_swarm_service(clara: Platform, swarm: SwarmCluster) -> None:
    pipeline = await clara.pipeline(gpu_pipeline(sleep=60))
    job = await clara.job(pipeline)
    await clara.start(job.job_id.value)
    await started_record(clara, job.payload_id.value)  # its task runs
    assert len(services_left(swarm)) == 1
    cancelled = await clara.jobs.Cancel(pb.JobsCancelRequest(job_id=job.job_id))
    assert cancelled.header.code == 0, cancelled.header.messages
    final = await clara.wait_stopped(job.job_id.value, within=30)
    assert final.status == pb.JOB_STATUS_CANCELED
    deadline = time.monotonic() + 20
    while (services_left(swarm) or networks_left(swarm)) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert services_left(swarm) == [] and networks_left(swarm) == []  # the job's network went with it
    tasks = swarm.docker(swarm.manager, "ps", "-a", "-q", "--filter", f"label=claret.job={job.job_id.value}")
    assert tasks.split() == []


async def claret_sees(clara: Platform, gpus: int, within: float = 10) -> None:
    """Until the queue's nodes (Claret's scheduling API) have ``gpus`` GPUs in all."""
    deadline = time.monotonic() + within
    while sum(len(node.capacity.gpu_ids) for node in (await clara.client.queue_snapshot()).nodes) != gpus:
        assert time.monotonic() < deadline, f"the queue never had {gpus} GPUs"
        await asyncio.sleep(0.05)


async def test_a_drained_node_takes_nothing_until_it_is_back(clara: Platform, swarm: SwarmCluster) -> None:
    for worker in swarm.workers:
        swarm.drain(worker)
    try:
        swarm.wait_for(swarm.workers, availability="Drain")
        await claret_sees(clara, gpus=0)
        pipeline = await clara.pipeline(gpu_pipeline(sleep=0.1))
        job = await clara.job(pipeline)
        refused = await clara.start(job.job_id.value)
        assert "needs 1 GPU; the node has 0" in " ".join(refused.header.messages)  # the manager, which has none
        swarm.activate(swarm.workers[1])
        swarm.wait_for(swarm.workers[1:], availability="Active")
        await claret_sees(clara, gpus=2)
        again = await clara.job(pipeline)
        started = await clara.start(again.job_id.value)
        assert started.header.code == 0, started.header.messages
        final = await clara.wait_stopped(again.job_id.value, within=60)
        assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
        record = (await clara.download(again.payload_id.value, "/operators/op/record")).decode()
        assert record.split()[3] == swarm.workers[1].name  # the only node back
    finally:
        for worker in swarm.workers:
            swarm.activate(worker)
        swarm.wait_ready()


def probe(targets: list[str], port: int) -> str:
    """sh that tries a TCP connection to each target and prints ``<target> reached|blocked`` per line."""
    tries = (
        f"if nc -w 2 {target} {port} </dev/null 2>/dev/null; then echo {target} reached; else echo {target} blocked; fi"
        for target in targets
    )
    return "; ".join(tries)


@contextlib.contextmanager
def listener() -> Iterator[int]:
    """A TCP port on every address of this machine (its bridges included) that accepts and closes at once,
    so a client that reached it ends."""
    with socket.create_server(("0.0.0.0", 0)) as server:

        def serve() -> None:
            with contextlib.suppress(OSError):  # closed: the test is over
                while True:
                    server.accept()[0].close()

        threading.Thread(target=serve, daemon=True).start()
        yield server.getsockname()[1]
        server.shutdown(socket.SHUT_RDWR)


async def test_operators_reach_nothing_outside_their_job(clara: Platform, swarm: SwarmCluster) -> None:
    """Attack: from the manager node (workers drained), where a task with no network would sit on docker0,
    an operator dials a port open on every host address, and another job's listening operator."""
    targets = [MANAGER_ADDRESS, DOCKER0, *(worker.address for worker in swarm.workers)]
    for worker in swarm.workers:
        swarm.drain(worker)
    try:
        with listener() as port:
            # The same probe as a plain service on the manager, no Claret: docker0 reaches the host.
            plain = ["--detach", "--quiet", "--mode", "replicated-job", "--restart-condition", "none"]
            where = ["--name", "claret-probe-control", "--constraint", "node.role==manager"]
            command = ["busybox", "sh", "-c", probe([DOCKER0], port)]
            control = swarm.docker(swarm.manager, "service", "create", *plain, *where, *command)
            try:
                logs = await service_logs(swarm, control.strip())
            finally:
                swarm.docker(swarm.manager, "service", "rm", control.strip())
            assert logs == [f"{DOCKER0} reached"]  # so the probe can tell

            server = await clara.job(await clara.pipeline(one_operator("hostname -i > /output/address; nc -l -p 8080")))
            await clara.start(server.job_id.value)
            address = (await started_record(clara, server.payload_id.value, "/operators/op/address")).split()[0]
            attacker = await clara.job(await clara.pipeline(one_operator(probe([*targets, address], port))))
            await clara.start(attacker.job_id.value)
            final = await clara.wait_stopped(attacker.job_id.value, within=60)
            assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
            assert await clara.logs(attacker.job_id.value, "op") == [f"{t} blocked" for t in [*targets, address]]
            await clara.client.cancel_job(server.job_id.value)
    finally:
        for worker in swarm.workers:
            swarm.activate(worker)
        swarm.wait_ready()


async def service_logs(swarm: SwarmCluster, service_id: str, within: float = 60) -> list[str]:
    """A one-shot service's output once its task completed."""
    deadline = time.monotonic() + within
    status = ("service", "ps", service_id, "--format", "{{.CurrentState}} {{.Error}}")
    while "Complete" not in (state := swarm.docker(swarm.manager, *status)):
        assert time.monotonic() < deadline, f"service {service_id} did not complete: {state}"
        await asyncio.sleep(0.2)
    return swarm.docker(swarm.manager, "service", "logs", "--raw", service_id).split("\n")[:-1]


async def test_a_restart_carries_on_an_operator_that_runs_on_a_worker(tmp_path: Path, swarm: SwarmCluster) -> None:
    async with serving(tmp_path, runtime="swarm") as clara:
        pipeline = await clara.pipeline(gpu_pipeline(sleep=3))
        job = await clara.job(pipeline)
        await clara.start(job.job_id.value)
        runtime_id = await clara.wait_runtime_id(job.job_id.value, "op", within=60)
    assert [runtime_id.startswith(left) for left in services_left(swarm)] == [True]  # it went on running
    async with serving(tmp_path, runtime="swarm") as clara:
        final = await clara.wait_stopped(job.job_id.value, within=60)
        assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
        assert clara.runtime_ids(job.job_id.value)["op"] == runtime_id
        assert (await clara.logs(job.job_id.value, "op"))[0].startswith("hello from GPU-w")
    assert services_left(swarm) == []


async def test_a_worker_lost_mid_job_evicts_its_job_and_nothing_stays_running(
    clara: Platform, swarm: SwarmCluster
) -> None:
    pipeline = await clara.pipeline(gpu_pipeline(sleep=60))
    jobs = [await clara.job(pipeline, name=f"long {i}") for i in range(4)]
    for job in jobs:
        await clara.start(job.job_id.value)
    records = {job.job_id.value: await started_record(clara, job.payload_id.value) for job in jobs}
    lost: Node = swarm.workers[0]
    swarm.kill_engine(lost)
    try:
        swarm.wait_down(lost)
        on_lost = [job for job in jobs if records[job.job_id.value].split()[3] == lost.name]
        assert len(on_lost) == 2  # two GPUs on each worker: two of the four ran there
        for job in on_lost:
            final = await clara.wait_stopped(job.job_id.value, within=30)
            assert final.status == pb.JOB_STATUS_EVICTED, final.messages
            assert "lost" in " ".join(final.messages)
            status = await clara.client.job_status(job.job_id.value)
            assert all(op.status != RUNNING for op in status.operators)  # nothing stays RUNNING
        for job in jobs:
            if job not in on_lost:
                cancelled = await clara.jobs.Cancel(pb.JobsCancelRequest(job_id=job.job_id))
                assert cancelled.header.code == 0
                await clara.wait_stopped(job.job_id.value, within=30)
    finally:
        swarm.restart_engine(lost)
        swarm.wait_ready()
    state = swarm.docker(swarm.manager, "node", "inspect", lost.node_id, "--format", "{{json .Status.State}}")
    assert json.loads(state) == "ready"
