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

from claret.client import ClientError, PlatformClient
from claret.records import Priority
from protos.nvidia.clara.platform import (
    common_pb2,
    jobs_pb2,
    jobs_pb2_grpc,
    payloads_pb2_grpc,
    pipelines_pb2_grpc,
)
from tests.helpers import make_settings, start_in_process
from tests.store import query

DATA = Path(__file__).parent / "data"


@dataclass
class Platform:
    """Shortcuts for the steps of a job, through the client (claret.client), and raw stubs for one server.

    The shortcuts answer what the tests read: ids as text, file contents as bytes, log lines; ``job``,
    ``start``, ``status`` and ``wait_stopped`` answer the wire messages (tests put their Identifiers into raw
    requests, read a refusal's header, or check fields as sent: ticks, the legacy time strings, the DAG).
    ``pipelines``, ``jobs`` and ``payloads`` are the generated stubs, for tests of the wire itself.
    """

    channel: grpc.aio.Channel
    database: str | Path
    """The store the server runs on (tests/store.py)."""
    runtime: str = "sandbox"
    address: str = ""
    """host:port of the server, for clients of their own (the official one)."""

    def __post_init__(self) -> None:
        self.client = PlatformClient("the test's server", timeout=None, channel=self.channel)
        self.pipelines = pipelines_pb2_grpc.PipelinesStub(self.channel)
        self.jobs = jobs_pb2_grpc.JobsStub(self.channel)
        self.payloads = payloads_pb2_grpc.PayloadsStub(self.channel)

    async def pipeline(self, text: str, path: str = "pipeline.yaml") -> str:
        return (await self.client.create_pipeline([(path, text)])).pipeline_id

    async def job(self, pipeline_id: str, name: str = "job", priority: int = 2) -> jobs_pb2.JobsCreateResponse:
        created = await self.client.create_job(pipeline_id, name, Priority(priority))
        return jobs_pb2.JobsCreateResponse(
            job_id=common_pb2.Identifier(value=created.job_id),
            payload_id=common_pb2.Identifier(value=created.payload_id),
        )

    async def upload(self, payload_id: str, name: str, data: bytes) -> None:
        await self.client.upload(payload_id, name, data)

    async def download(self, payload_id: str, name: str) -> bytes:
        return await self.client.download_bytes(payload_id, name)

    async def start(self, job_id: str, **variables: str) -> jobs_pb2.JobsStartResponse:
        """The answer as a message, a refusal included (its header has the code and messages)."""
        try:
            started = await self.client.start_job(job_id, variables)
        except ClientError as refused:
            if refused.code is None:
                raise
            return jobs_pb2.JobsStartResponse(
                header=common_pb2.ResponseHeader(code=refused.code, messages=refused.messages)
            )
        return jobs_pb2.JobsStartResponse(state=started.state, status=started.status, priority=started.priority)

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
            job = await self.client.job_status(job_id)
            if any(op.name == name and op.status == status for op in job.operators):
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
        return [line async for line in self.client.read_logs(job_id, operator)]

    def runtime_ids(self, job_id: str) -> dict[str, str]:
        return runtime_ids(self.database, job_id)


@asynccontextmanager
async def serving(tmp_path: Path, **changes: object) -> AsyncIterator[Platform]:
    """Every service in this event loop, with ``make_settings(tmp_path, **changes)``, and stubs for it."""
    server, resources = await start_in_process(make_settings(tmp_path, **changes))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            address = f"127.0.0.1:{server.port}"
            yield Platform(channel, resources.settings.database_target, resources.settings.runtime, address)
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
