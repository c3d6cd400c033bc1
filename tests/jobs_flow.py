"""Helpers for tests that drive jobs through the real gRPC services."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from protos.nvidia.clara.platform import (
    common_pb2,
    jobs_pb2,
    jobs_pb2_grpc,
    payloads_pb2,
    payloads_pb2_grpc,
    pipelines_pb2_grpc,
)
from protos.nvidia.clara.platform import pipelines_pb2 as ppb
from tests.conftest import make_settings, start_in_process
from tests.store import query

DATA = Path(__file__).parent / "data"


@dataclass
class Platform:
    """Stubs for one server, and shortcuts for the steps of a job."""

    channel: grpc.aio.Channel
    database: str | Path
    """The store the server runs on (tests/store.py)."""
    runtime: str = "sandbox"

    def __post_init__(self) -> None:
        self.pipelines = pipelines_pb2_grpc.PipelinesStub(self.channel)
        self.jobs = jobs_pb2_grpc.JobsStub(self.channel)
        self.payloads = payloads_pb2_grpc.PayloadsStub(self.channel)

    async def pipeline(self, text: str, path: str = "pipeline.yaml") -> str:
        async def requests() -> AsyncIterator[ppb.PipelinesCreateRequest]:
            yield ppb.PipelinesCreateRequest(definition=ppb.PipelineDefinitionFile(path=path, content=text))

        reply = await self.pipelines.Create(requests())
        assert reply.header.code == 0, reply.header.messages
        return reply.pipeline_id.value

    async def job(self, pipeline_id: str, name: str = "job", priority: int = 2) -> jobs_pb2.JobsCreateResponse:
        reply = await self.jobs.Create(
            jobs_pb2.JobsCreateRequest(
                pipeline_id=common_pb2.Identifier(value=pipeline_id), name=name, priority=priority
            )
        )  # type: ignore[arg-type]
        assert reply.header.code == 0, reply.header.messages
        return reply

    async def upload(self, payload_id: str, name: str, data: bytes) -> None:
        async def requests() -> AsyncIterator[payloads_pb2.PayloadsUploadRequest]:
            yield payloads_pb2.PayloadsUploadRequest(
                payload_id=common_pb2.Identifier(value=payload_id),
                details=payloads_pb2.PayloadFileDetails(name=name),
                data=data,
            )

        reply = await self.payloads.Upload(requests())
        assert reply.header.code == 0, reply.header.messages

    async def download(self, payload_id: str, name: str) -> bytes:
        request = payloads_pb2.PayloadsDownloadRequest(payload_id=common_pb2.Identifier(value=payload_id), name=name)
        replies = [r async for r in self.payloads.Download(request)]
        assert replies[0].header.code == 0, replies[0].header.messages
        return b"".join(r.data for r in replies)

    async def start(self, job_id: str, **variables: str) -> jobs_pb2.JobsStartResponse:
        named = [jobs_pb2.JobsStartRequest.NamedValue(name=k, value=v) for k, v in variables.items()]
        return await self.jobs.Start(
            jobs_pb2.JobsStartRequest(job_id=common_pb2.Identifier(value=job_id), Variables=named)
        )

    async def status(self, job_id: str) -> jobs_pb2.JobsStatusResponse:
        reply = await self.jobs.Status(jobs_pb2.JobsStatusRequest(job_id=common_pb2.Identifier(value=job_id)))
        assert reply.header.code == 0, reply.header.messages
        return reply

    async def wait_stopped(self, job_id: str, within: float = 30) -> jobs_pb2.JobsStatusResponse:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            reply = await self.status(job_id)
            if reply.state == jobs_pb2.JOB_STATE_STOPPED:
                return reply
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {job_id} did not stop within {within} s: {reply}")

    async def wait_operator(self, job_id: str, name: str, status: int, within: float = 20) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            reply = await self.status(job_id)
            if any(op.name == name and op.status == status for op in reply.operator_details):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"operator {name} of job {job_id} never reached status {status}")

    async def wait_runtime_id(self, job_id: str, name: str, within: float = 10) -> str:
        """The operator's runtime id once the executor recorded it (just after the runtime started it)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if found := self.runtime_ids(job_id).get(name):
                return found
            await asyncio.sleep(0.02)
        raise AssertionError(f"operator {name} of job {job_id} got no runtime id")

    async def logs(self, job_id: str, operator: str) -> list[str]:
        request = jobs_pb2.JobsReadLogsRequest(job_id=common_pb2.Identifier(value=job_id), operator_name=operator)
        return [line async for reply in self.jobs.ReadLogs(request) for line in reply.logs]

    def runtime_ids(self, job_id: str) -> dict[str, str]:
        return runtime_ids(self.database, job_id)


@asynccontextmanager
async def serving(tmp_path: Path, **changes: object) -> AsyncIterator[Platform]:
    """Every service in this event loop, with ``make_settings(tmp_path, **changes)``, and stubs for it."""
    server, resources = await start_in_process(make_settings(tmp_path, **changes))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield Platform(channel, resources.settings.database_target, runtime=resources.settings.runtime)
    finally:
        await server.stop(grace=1)
        await resources.close()


def one_operator(command: str, *, requests: str = "", output: str = "/output") -> str:
    """A pipeline of one operator ``op`` running ``sh -c command`` with /input and ``output`` mounted."""
    return f"""api-version: 0.4.0
name: one
operators:
- name: op
  container:
    image: busybox
    command: ["sh", "-c", {json.dumps(command)}]
  {f"requests: {requests}" if requests else ""}
  input: [{{path: /input}}]
  output: [{{path: {json.dumps(output)}}}]
"""


async def run_job(clara: Platform, text: str, within: float = 30) -> tuple[jobs_pb2.JobsStatusResponse, str]:
    """Create, start and wait for a job of the pipeline ``text``: its final status and its payload id."""
    job = await clara.job(await clara.pipeline(text))
    await clara.start(job.job_id.value)
    return await clara.wait_stopped(job.job_id.value, within=within), job.payload_id.value


def runtime_ids(database: str | Path, job_id: str) -> dict[str, str]:
    """Operator name -> runtime id (container id, sandbox pid:start) as the database recorded them."""
    rows = query(database, "SELECT name, runtime_id FROM operators WHERE job_id = ?", (job_id,))
    return {str(name): str(runtime_id) for name, runtime_id in rows if runtime_id}


def containers_of(job_id: str) -> list[str]:
    """Ids of the Docker containers (running or not) labelled with this job."""
    result = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=claret.job={job_id}"], capture_output=True, text=True, check=True
    )
    return result.stdout.split()


def process_alive(runtime_id: str) -> bool:
    """Whether the sandbox process (its process group) of a runtime id still exists."""
    pid = int(runtime_id.split(":")[0])
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pid and fields[0] != "Z":  # field 5: process group
                return True
    return False
