"""The Docker runtime with a real engine: GPU device requests, limits, missing images, cleanup."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import grpc
import pytest

from protos.nvidia.clara.platform import jobs_pb2 as pb
from services.jobs.runtimes.base import Mount, OperatorSpec
from services.jobs.runtimes.docker import PathMapping, container_config
from tests.helpers import make_settings, start_in_process
from tests.jobs_flow import Platform, containers_of

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]


def pipeline(command: str, requests: str = "", image: str = "busybox") -> str:
    return f"""api-version: 0.4.0
name: docker-test
operators:
- name: op
  container:
    image: {image}
    command: ["sh", "-c", {command!r}]
  requests: {{{requests}}}
  input: [{{path: /input}}]
  output: [{{path: /output}}]
"""


@pytest.fixture
async def docker_clara(tmp_path: Path) -> AsyncIterator[Platform]:
    settings = make_settings(tmp_path, runtime="docker", gpus=("0", "1"))
    server, resources = await start_in_process(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield Platform(channel, settings.database_target, runtime="docker")
    finally:
        await server.stop(grace=1)
        await resources.close()


async def test_gpu_container_is_created_with_exactly_the_granted_device_ids(tmp_path: Path) -> None:
    spec = OperatorSpec(
        job_id="j" * 32,
        operator="gpu-op",
        image="busybox:latest",
        command=("true",),
        env={},
        mounts=(Mount(tmp_path, "/input", read_only=True),),
        cpu=2,
        memory_mb=256,
        gpu_ids=("1", "3"),
        log_path=tmp_path / "log",
        labels={"claret.job": "j" * 32},
    )
    docker = aiodocker.Docker()
    try:
        container = await docker.containers.create(container_config(spec, PathMapping(tmp_path, None)))
        try:
            host = (await container.show())["HostConfig"]
        finally:
            await container.delete(force=True)
    finally:
        await docker.close()
    assert host["DeviceRequests"] == [
        {"Driver": "nvidia", "Count": 0, "DeviceIDs": ["1", "3"], "Capabilities": [["gpu"]], "Options": None}
    ]
    assert host["Memory"] == 256 * 1024 * 1024 and host["NanoCpus"] == 2_000_000_000
    assert host["NetworkMode"] == "none" and host["Init"] is True
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["CapDrop"] == ["ALL"]
    assert host["Binds"] == [f"{tmp_path.resolve()}:/input:ro"]


def test_host_path_mapping_rewrites_bind_sources(tmp_path: Path) -> None:
    mapping = PathMapping(tmp_path / "payloads", Path("/srv/claret/payloads"))
    assert mapping.to_host(tmp_path / "payloads" / "abc" / "input") == "/srv/claret/payloads/abc/input"
    assert mapping.to_host(Path("/elsewhere")) == "/elsewhere"


async def test_gpu_operator_without_nvidia_runtime_faults_with_the_engines_message(docker_clara: Platform) -> None:
    job = await docker_clara.job(await docker_clara.pipeline(pipeline("true", "gpu: 1")))
    await docker_clara.start(job.job_id.value)
    final = await docker_clara.wait_stopped(job.job_id.value, within=30)
    assert final.status == pb.JOB_STATUS_FAULTED
    assert any("could not start" in m and "nvidia" in m for m in final.messages), final.messages
    assert containers_of(job.job_id.value) == []


async def test_missing_image_is_a_fault_naming_it(docker_clara: Platform) -> None:
    job = await docker_clara.job(await docker_clara.pipeline(pipeline("true", image="no/such-image")))
    await docker_clara.start(job.job_id.value)
    final = await docker_clara.wait_stopped(job.job_id.value)
    assert final.status == pb.JOB_STATUS_FAULTED
    assert any("no/such-image:latest" in m for m in final.messages), final.messages


async def test_memory_request_becomes_the_limit(docker_clara: Platform) -> None:
    command = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"
    job = await docker_clara.job(
        await docker_clara.pipeline(pipeline(f"{{ {command}; }} > /output/limit", "memory: 64"))
    )
    await docker_clara.start(job.job_id.value)
    assert (await docker_clara.wait_stopped(job.job_id.value)).status == pb.JOB_STATUS_HEALTHY
    limit = await docker_clara.download(job.payload_id.value, "/operators/op/limit")
    assert int(limit) == 64 * 1024 * 1024
    assert containers_of(job.job_id.value) == []  # removed once its logs were saved


async def test_a_leftover_container_of_the_same_operator_is_replaced(docker_clara: Platform) -> None:
    """A create still in flight when the service died leaves a container with the operator's name."""
    pipeline_id = await docker_clara.pipeline(pipeline("echo fresh"))
    job = await docker_clara.job(pipeline_id)
    name = f"claret-{job.job_id.value}-op"
    subprocess.run(
        ["docker", "create", "--name", name, "--label", f"claret.job={job.job_id.value}", "busybox:latest", "true"],
        check=True,
        capture_output=True,
    )
    await docker_clara.start(job.job_id.value)
    final = await docker_clara.wait_stopped(job.job_id.value)
    assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
    assert await docker_clara.logs(job.job_id.value, "op") == ["fresh"]
    assert containers_of(job.job_id.value) == []
