"""The swarm runtime on a real three-node swarm (tests/swarm/cluster.py): the main engine is the manager, two
workers in network namespaces declare two fake GPU ids each. Claret runs in this process with
``runtime="swarm"`` against the manager; its operators run as one-shot Swarm services on the workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from claret.errors import ClientError
from protos.nvidia.clara.platform import jobs_pb2 as pb
from tests.jobs_flow import Platform, one_operator, serving
from tests.swarm.cluster import Node, SwarmCluster
from tests.test_replicas import intervals_overlap

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

RUNNING = pb.JOB_OPERATOR_STATUS_RUNNING

RECORDING_GPU_OPERATOR = """api-version: 0.4.0
name: swarm-gpu
operators:  # /proc/uptime: one clock for every container on the machine, in busybox's hundredths of a second
- name: op
  container:
    image: busybox
    command: ["sh", "-c", "echo start $(cut -d' ' -f1 /proc/uptime) $NVIDIA_VISIBLE_DEVICES $DOCKER_RESOURCE_GPU
      $(hostname) >> /output/record; echo hello from $NVIDIA_VISIBLE_DEVICES; sleep {sleep};
      echo end $(cut -d' ' -f1 /proc/uptime) >> /output/record"]
  requests: {{gpu: {gpus}, cpu: 0, memory: 16}}
  output: [{{path: /output}}]
"""


def gpu_pipeline(sleep: float = 0.5, gpus: int = 1) -> str:
    return RECORDING_GPU_OPERATOR.format(sleep=sleep, gpus=gpus)


def services_left(swarm: SwarmCluster) -> list[str]:
    listing = swarm.docker(swarm.manager, "service", "ls", "--filter", "label=claret.job", "--format", "{{.ID}}")
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


async def started_record(clara: Platform, payload_id: str, within: float = 60) -> str:
    """The operator's record once it wrote its start (RUNNING is recorded before its task runs)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(ClientError):
            if record := (await clara.download(payload_id, "/operators/op/record")).decode():
                return record
        await asyncio.sleep(0.1)
    raise AssertionError(f"the operator of payload {payload_id} wrote no record within {within} s")


async def test_twenty_gpu_operators_spread_over_both_workers_never_two_on_one_gpu(
    clara: Platform, swarm: SwarmCluster
) -> None:
    records = await run_gpu_jobs(clara, 20, sleep=0.5)

    gpus_of = {worker.name: set(worker.gpus) for worker in swarm.workers}
    spans: dict[str, list[tuple[float, float]]] = {}
    swarm_spans: dict[str, list[tuple[float, float]]] = {}
    hosts = set()
    for lines in records.values():
        (start,) = [line for line in lines if line[0] == "start"]
        (end,) = [line for line in lines if line[0] == "end"]
        _, began, visible, assigned, host = start
        # Granted by Claret's ledger on the node Swarm ran it on; Swarm counted one GPU of that node too.
        assert visible in gpus_of[host] and assigned in gpus_of[host], (start, gpus_of)
        spans.setdefault(visible, []).append((float(began), float(end[1])))
        swarm_spans.setdefault(assigned, []).append((float(began), float(end[1])))
        hosts.add(host)
    assert hosts == set(gpus_of)  # spread over both workers
    assert sum(len(s) for s in spans.values()) == 20
    assert not any(intervals_overlap(s) for s in spans.values()), spans
    assert not any(intervals_overlap(s) for s in swarm_spans.values()), swarm_spans
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


async def test_cancel_leaves_no_swarm_service(clara: Platform, swarm: SwarmCluster) -> None:
    pipeline = await clara.pipeline(gpu_pipeline(sleep=60))
    job = await clara.job(pipeline)
    await clara.start(job.job_id.value)
    await clara.wait_operator(job.job_id.value, "op", RUNNING, within=60)
    assert len(services_left(swarm)) == 1
    cancelled = await clara.jobs.Cancel(pb.JobsCancelRequest(job_id=job.job_id))
    assert cancelled.header.code == 0, cancelled.header.messages
    final = await clara.wait_stopped(job.job_id.value, within=30)
    assert final.status == pb.JOB_STATUS_CANCELED
    deadline = time.monotonic() + 20
    while services_left(swarm) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert services_left(swarm) == []
    tasks = swarm.docker(swarm.manager, "ps", "-a", "-q", "--filter", f"label=claret.job={job.job_id.value}")
    assert tasks.split() == []


async def test_a_drained_node_takes_nothing_until_it_is_back(clara: Platform, swarm: SwarmCluster) -> None:
    for worker in swarm.workers:
        swarm.drain(worker)
    try:
        swarm.wait_for(swarm.workers, availability="Drain")
        pipeline = await clara.pipeline(gpu_pipeline(sleep=0.1))
        job = await clara.job(pipeline)
        refused = await clara.start(job.job_id.value)
        assert "needs 1 GPU; the node has 0" in " ".join(refused.header.messages)  # the manager, which has none
        swarm.activate(swarm.workers[1])
        swarm.wait_for(swarm.workers[1:], availability="Active")
        again = await clara.job(pipeline)
        started = await clara.start(again.job_id.value)
        assert started.header.code == 0, started.header.messages
        final = await clara.wait_stopped(again.job_id.value, within=60)
        assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
        record = (await clara.download(again.payload_id.value, "/operators/op/record")).decode()
        assert record.split()[4] == swarm.workers[1].name  # the only node back
    finally:
        for worker in swarm.workers:
            swarm.activate(worker)
        swarm.wait_ready()


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
        on_lost = [job for job in jobs if records[job.job_id.value].split()[4] == lost.name]
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
