"""Job benchmarks' shared parts: driving a job through the Clara API, and the bare runtime baselines.

The bare baselines build their command lines (sandbox) and container bodies (Docker) with the runtimes' own
functions, so the only difference from Claret is the platform around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from claret.client import PlatformClient
from claret.records import Job, JobState, JobStatus
from services.jobs.runtimes.base import Mount, OperatorSpec
from services.jobs.runtimes.sandbox import INSTALLED_SANDBOX_EXEC, Descriptors, bwrap_arguments

OPERATOR_USER = (65532, 65532)
"""The platform's default operator uid and gid (``CLARET_OPERATOR_UID``/``GID``)."""


def one_operator_pipeline(command: list[str], *, mounts: bool = True, requests: str = "") -> str:
    """A one-operator pipeline (operator ``op``, image busybox), optionally with /input and /output."""
    quoted = ", ".join(f'"{part}"' for part in command)
    text = f"""api-version: 0.4.0
name: bench
operators:
- name: op
  container:
    image: busybox
    command: [{quoted}]
"""
    if requests:
        text += f"  requests: {requests}\n"
    if mounts:
        text += "  input: [{path: /input}]\n  output: [{path: /output}]\n"
    return text


@dataclass
class Clara:
    """One Claret server through the client (claret.client), and the steps of a job as the benchmarks time
    them. ``client`` is there for anything else."""

    channel: grpc.aio.Channel

    def __post_init__(self) -> None:
        self.client = PlatformClient("the benchmark's server", timeout=None, channel=self.channel)

    async def pipeline(self, text: str) -> str:
        return (await self.client.create_pipeline([("pipeline.yaml", text)])).pipeline_id

    async def create(self, pipeline_id: str, name: str = "bench") -> tuple[str, str]:
        """(job id, payload id) of a new job."""
        created = await self.client.create_job(pipeline_id, name)
        return created.job_id, created.payload_id

    async def upload(self, payload_id: str, name: str, data: bytes) -> None:
        await self.client.upload(payload_id, name, data)

    async def start(self, job_id: str) -> None:
        await self.client.start_job(job_id)

    async def wait_stopped(self, job_id: str, interval: float, within: float = 30) -> tuple[Job, int]:
        """Poll Status every ``interval`` seconds until the job is STOPPED: (the job then, number of polls)."""
        deadline = time.monotonic() + within
        polls = 0
        while time.monotonic() < deadline:
            job = await self.client.job_status(job_id)
            polls += 1
            if job.state is JobState.STOPPED:
                return job, polls
            await asyncio.sleep(interval)
        raise TimeoutError(f"job {job_id} did not stop within {within} s")


def check_healthy(job: Job) -> None:
    if job.status is not JobStatus.HEALTHY:
        raise AssertionError(f"job ended {job.status.wire_name}: {list(job.messages)}")


async def timed_job(
    clara: Clara, pipeline_id: str, poll: float, *, into: list[float] | None, faults: list[str]
) -> None:
    """Time one job from Jobs.Create to seen STOPPED (one small file uploaded, Status every ``poll`` seconds):
    its milliseconds go to ``into`` (None: a warm-up, not kept), or, when it did not end HEALTHY, why to
    ``faults``."""
    t0 = time.perf_counter()
    job_id, payload_id = await clara.create(pipeline_id)
    await clara.upload(payload_id, "hello.txt", b"hello world\n")
    await clara.start(job_id)
    job, _ = await clara.wait_stopped(job_id, poll, within=60)
    elapsed = (time.perf_counter() - t0) * 1000
    try:
        check_healthy(job)
    except AssertionError as exc:
        faults.append(str(exc))
        return
    if into is not None:
        into.append(elapsed)


def bare_spec(work: Path, command: list[str], *, mounts: bool = True, index: int = 0) -> OperatorSpec:
    """An operator spec like the executor's (same mounts, the same platform variables) in ``work``."""
    payload = work / f"payload-{index}"
    found: tuple[Mount, ...] = ()
    if mounts:
        (payload / "input").mkdir(parents=True, exist_ok=True)
        (payload / "operators" / "op").mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # the operator runs as the platform's default operator user
            os.chown(payload / "operators" / "op", *OPERATOR_USER)
        found = (Mount(payload / "input", "/input", True), Mount(payload / "operators" / "op", "/output", False))
    job_id = os.urandom(16).hex()
    env = {
        "NVIDIA_CLARA_JOB_ID": job_id,
        "NVIDIA_CLARA_JOB_NAME": "bench",
        "NVIDIA_CLARA_STAGE_NAME": "op",
        "NVIDIA_CLARA_PAYLOAD_ID": os.urandom(16).hex(),
        "NVIDIA_CLARA_PIPELINE_ID": os.urandom(16).hex(),
        "NVIDIA_CLARA_INPUT": "/input" if mounts else "",
        "NVIDIA_CLARA_OUTPUT": "/output" if mounts else "",
        "NVIDIA_CLARA_NOSYNCLOCK": "1",
        "NVIDIA_VISIBLE_DEVICES": "void",
        "CUDA_VISIBLE_DEVICES": "",
    }
    return OperatorSpec(
        job_id=job_id,
        operator="op",
        image="busybox:latest",
        command=tuple(command),
        env=env,
        mounts=found,
        cpu=1,
        memory_mb=256,
        gpu_ids=(),
        log_path=work / "logs" / f"op-{index}.log",
        labels={"claret.job": job_id, "claret.operator": "op", "claret.instance": "claret-bench"},
        user=OPERATOR_USER,
    )


async def run_bwrap(spec: OperatorSpec) -> int:
    """Run the operator's bwrap command line bare, the cheapest correct way from an asyncio program: log file,
    status fd, seccomp filter, generated /etc files and the drop (claret-sandbox-exec where installed) as the
    sandbox runtime passes them, its own session, spawned with ``subprocess.Popen`` (vfork) and awaited
    through a pidfd. Returns the exit code. What the runtime adds around it (a control group with the
    limits, killing what the operator left) is part of the platform's overhead."""
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    status_path = spec.log_path.with_suffix(".status")
    fds = Descriptors()
    drop_to = OPERATOR_USER if os.geteuid() == 0 else None  # as the runtime runs operators
    with open(spec.log_path, "ab") as log_file, open(status_path, "wb") as status:  # noqa: ASYNC230
        process = subprocess.Popen(  # noqa: ASYNC220 - vfork: returns in well under a millisecond
            bwrap_arguments(spec, fds, status.fileno(), drop_to, helper=INSTALLED_SANDBOX_EXEC),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            pass_fds=fds.fds,
            start_new_session=True,
        )
    fds.close()
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()
    pidfd = os.pidfd_open(process.pid)
    loop.add_reader(pidfd, lambda: None if exited.done() else exited.set_result(None))
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return process.wait()


@contextlib.asynccontextmanager
async def docker_client() -> AsyncIterator[object]:
    import aiodocker

    docker = aiodocker.Docker()
    try:
        yield docker
    finally:
        await docker.close()


def fill_history(database: Path, jobs: int) -> None:
    """Add ``jobs`` stopped jobs (one completed operator and a payload row each) to a migrated database."""
    now = time.time()
    files = json.dumps([["pipeline.yaml", one_operator_pipeline(["true"])]])
    with sqlite3.connect(database) as conn:
        conn.executemany(
            "INSERT INTO jobs (id, pipeline_id, payload_id, name, priority, state, status, files, created, queued,"
            " started, stopped) VALUES (?, ?, ?, ?, 2, 3, 1, ?, ?, ?, ?, ?)",
            (
                (f"{n:032x}", "f" * 32, f"{n:031x}e", f"history {n}", files, now - n, now - n, now - n, now - n)
                for n in range(jobs)
            ),
        )
        conn.executemany(
            "INSERT INTO operators (job_id, name, position, status, created, started, stopped, exit_code)"
            " VALUES (?, 'op', 0, 3, ?, ?, ?, 0)",
            ((f"{n:032x}", now - n, now - n, now - n) for n in range(jobs)),
        )
        conn.executemany(
            "INSERT INTO payloads (id, type, job_id, read_only, created) VALUES (?, 1, ?, 1, ?)",
            ((f"{n:031x}e", f"{n:032x}", now - n) for n in range(jobs)),
        )
