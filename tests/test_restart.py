"""Restart recovery: SIGKILL the server while an operator runs, start it again, nothing is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from contextlib import AbstractContextManager
from pathlib import Path

import grpc
import pytest

from protos.nvidia.clara.platform import jobs_pb2 as pb
from services.jobs.runtimes.sandbox import find_sandbox
from tests.helpers import serve_process
from tests.jobs_flow import Platform, containers_of
from tests.store import query, target

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)

RUNTIMES = ["sandbox", pytest.param("docker", marks=pytest.mark.docker)]

SLOW_OPERATOR = """api-version: 0.4.0
name: slow
operators:
- name: op
  container:
    image: busybox
    command: ["sh", "-c", "echo before; sleep {sleep}; echo after; echo done > /output/done.txt"]
  input: [{{path: /input}}]
  output: [{{path: /output}}]
"""


def server(data_dir: Path, runtime: str) -> AbstractContextManager[tuple[str, subprocess.Popen[bytes]]]:
    return serve_process(data_dir, "--runtime", runtime, CLARET_STOP_GRACE="1")


def leftovers(runtime: str, job_id: str) -> bool:
    """Any container or sandbox process of the job still there."""
    return bool(containers_of(job_id)) if runtime == "docker" else find_sandbox(job_id, "op") is not None


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
    return str(request.param)


@pytest.mark.parametrize("sleep", [2, 0.2], ids=["still-running", "ended-while-down"])
async def test_killed_server_reattaches_and_the_job_completes(tmp_path: Path, runtime: str, sleep: float) -> None:
    data = tmp_path / "data"
    with server(data, runtime) as (address, process):
        async with grpc.aio.insecure_channel(address) as channel:
            clara = Platform(channel, target(data), runtime=runtime)
            job = await clara.job(await clara.pipeline(SLOW_OPERATOR.format(sleep=sleep)))
            await clara.start(job.job_id.value)
            await clara.wait_operator(job.job_id.value, "op", pb.JOB_OPERATOR_STATUS_RUNNING)
        process.send_signal(signal.SIGKILL)
        process.wait()
    if sleep < 1:
        await asyncio.sleep(1.5)  # let it end while nobody watches
    with server(data, runtime) as (address, _):
        async with grpc.aio.insecure_channel(address) as channel:
            clara = Platform(channel, target(data), runtime=runtime)
            final = await clara.wait_stopped(job.job_id.value)
            assert (final.state, final.status) == (pb.JOB_STATE_STOPPED, pb.JOB_STATUS_HEALTHY), final.messages
            assert await clara.logs(job.job_id.value, "op") == ["before", "after"]
            assert await clara.download(job.payload_id.value, "/operators/op/done.txt") == b"done\n"
    assert not leftovers(runtime, job.job_id.value)


async def test_operator_lost_while_down_ends_the_job_evicted(tmp_path: Path, runtime: str) -> None:
    data = tmp_path / "data"
    with server(data, runtime) as (address, process):
        async with grpc.aio.insecure_channel(address) as channel:
            clara = Platform(channel, target(data), runtime=runtime)
            job = await clara.job(await clara.pipeline(SLOW_OPERATOR.format(sleep=30)))
            await clara.start(job.job_id.value)
            await clara.wait_operator(job.job_id.value, "op", pb.JOB_OPERATOR_STATUS_RUNNING)
            runtime_id = await clara.wait_runtime_id(job.job_id.value, "op")
            while await clara.logs(job.job_id.value, "op") != ["before"]:
                await asyncio.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
    # The operator disappears without a trace while the service is down.
    if runtime == "docker":
        subprocess.run(["docker", "rm", "-f", runtime_id], check=True, capture_output=True)
    else:
        os.killpg(int(runtime_id.split(":")[0]), signal.SIGKILL)
        (data / "logs" / job.job_id.value / "op.status").write_text("")
    with server(data, runtime) as (address, _):
        async with grpc.aio.insecure_channel(address) as channel:
            clara = Platform(channel, target(data), runtime=runtime)
            final = await clara.wait_stopped(job.job_id.value)
            assert final.status == pb.JOB_STATUS_EVICTED
            assert any("lost" in m and "op" in m for m in final.messages), final.messages
            assert await clara.logs(job.job_id.value, "op") == ["before"]


async def test_operator_recorded_as_starting_but_never_started_runs_afresh(tmp_path: Path, runtime: str) -> None:
    """The service died between recording an operator's start and making it happen."""
    data = tmp_path / "data"
    with server(data, runtime) as (address, _):
        async with grpc.aio.insecure_channel(address) as channel:
            clara = Platform(channel, target(data), runtime=runtime)
            job = await clara.job(await clara.pipeline(SLOW_OPERATOR.format(sleep=0.1)))
    job_id = job.job_id.value
    now = time.time()  # what operator_starting leaves behind:
    query(
        target(data),
        "UPDATE jobs SET queued = ?, started = ?, state = 2, timeout = 600 WHERE id = ?",
        (now, now, job_id),
    )
    query(target(data), "UPDATE operators SET status = 2, started = ? WHERE job_id = ?", (now, job_id))
    if runtime == "sandbox":  # the status file was opened, bwrap not yet spawned
        (data / "logs" / job_id).mkdir(parents=True)
        (data / "logs" / job_id / "op.status").write_text("")
    if runtime == "docker":  # created with an old grant, never started
        subprocess.run(
            [
                "docker",
                "create",
                "--name",
                f"claret-{job_id}-op",
                "--label",
                f"claret.job={job_id}",
                "busybox:latest",
                "true",
            ],
            check=True,
            capture_output=True,
        )
    with server(data, runtime) as (address, _):
        async with grpc.aio.insecure_channel(address) as channel:
            clara = Platform(channel, target(data), runtime=runtime)
            final = await clara.wait_stopped(job_id)
            assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
            assert await clara.logs(job_id, "op") == ["before", "after"]
    assert not leftovers(runtime, job_id)


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
async def test_a_container_of_a_stopped_job_is_removed_at_start(tmp_path: Path) -> None:
    """Left by a shutdown during the job's stop: the database says STOPPED, the operator still RUNNING."""
    data = tmp_path / "data"
    with server(data, "docker") as (address, _):
        async with grpc.aio.insecure_channel(address) as channel:
            clara = Platform(channel, target(data), runtime="docker")
            job = await clara.job(await clara.pipeline(SLOW_OPERATOR.format(sleep=30)))
    job_id = job.job_id.value
    now = time.time()
    query(
        target(data),
        "UPDATE jobs SET queued = ?, started = ?, stopped = ?, state = 3, status = 3 WHERE id = ?",
        (now, now, now, job_id),
    )
    query(target(data), "UPDATE operators SET status = 2, started = ? WHERE job_id = ?", (now, job_id))
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            f"claret-{job_id}-op",
            "--label",
            f"claret.job={job_id}",
            "--label",
            "claret.operator=op",
            "--label",
            "claret.instance=claret",
            "busybox:latest",
            "sleep",
            "30",
        ],
        check=True,
        capture_output=True,
    )
    with server(data, "docker"):
        for _ in range(100):  # the port opens while the jobs service still recovers
            if not containers_of(job_id):
                break
            await asyncio.sleep(0.1)
        assert containers_of(job_id) == []


async def test_an_operator_the_node_can_no_longer_hold_is_stopped_and_its_job_evicted(tmp_path: Path) -> None:
    """Restarted with fewer GPUs than a running operator holds: the service starts, the job is evicted."""
    data = tmp_path / "data"
    text = SLOW_OPERATOR.format(sleep=30).replace("  input:", "  requests: {gpu: 1}\n  input:")
    with serve_process(data, "--runtime", "sandbox", CLARET_GPUS="0", CLARET_STOP_GRACE="1") as (address, process):
        async with grpc.aio.insecure_channel(address) as channel:
            clara = Platform(channel, target(data))
            job = await clara.job(await clara.pipeline(text))
            await clara.start(job.job_id.value)
            await clara.wait_runtime_id(job.job_id.value, "op")
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert find_sandbox(job.job_id.value, "op") is not None
    with serve_process(data, "--runtime", "sandbox", CLARET_GPUS="", CLARET_STOP_GRACE="1") as (address, _):
        async with grpc.aio.insecure_channel(address) as channel:
            final = await Platform(channel, target(data)).wait_stopped(job.job_id.value)
            assert final.status == pb.JOB_STATUS_EVICTED
            assert [op.status for op in final.operator_details] == [pb.JOB_OPERATOR_STATUS_FAULTED]
    assert find_sandbox(job.job_id.value, "op") is None
