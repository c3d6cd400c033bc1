"""Crash safety: SIGKILL the platform at random moments while 20 jobs run, restart, repeat.

Every job must end in a correct terminal state (completed, or EVICTED when an operator vanished), its logs
readable, the database intact, and no container or sandbox process left behind.
"""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

import grpc
import pytest

from protos.nvidia.clara.platform import jobs_pb2 as pb
from services.jobs.runtimes.sandbox import find_sandbox
from shared.db import is_postgres
from tests.helpers import serve_process
from tests.jobs_flow import Platform, containers_of
from tests.store import query, target

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)

JOBS = 20
KILLS = 3
PIPELINE = """api-version: 0.4.0
name: crash-{n}
operators:
- name: first
  container:
    image: busybox
    command: ["sh", "-c", "echo first; sleep {a}; echo done > /output/first.txt"]
  requests: {{cpu: 0, memory: 16}}
  input: [{{path: /input}}]
  output: [{{path: /output}}]
- name: second
  container:
    image: busybox
    command: ["sh", "-c", "cat /in/first.txt; sleep {b}; echo second"]
  requests: {{cpu: 0, memory: 16}}
  input: [{{from: first, path: /in}}]
  output: [{{path: /output}}]
"""


@pytest.fixture(params=["sandbox", pytest.param("docker", marks=pytest.mark.docker)])
def runtime(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
    return str(request.param)


async def test_sigkill_at_random_moments(tmp_path: Path, runtime: str) -> None:
    rng = random.Random(20261125)
    data = tmp_path / "data"
    database = target(data)
    job_ids: list[str] = []
    for cycle in range(KILLS + 1):
        with serve_process(data, "--runtime", runtime, CLARET_STOP_GRACE="1") as (address, process):
            async with grpc.aio.insecure_channel(address) as channel:
                clara = Platform(channel, database, runtime=runtime)
                if cycle == 0:
                    for n in range(JOBS):
                        a, b = (round(rng.uniform(0.1, 1.2), 2) for _ in range(2))
                        text = PIPELINE.format(n=n, a=a, b=b)
                        job = await clara.job(await clara.pipeline(text), name=f"crash-{n}")
                        await clara.start(job.job_id.value)
                        job_ids.append(job.job_id.value)
                if cycle < KILLS:
                    await asyncio.sleep(rng.uniform(0.2, 1.5))
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    continue
                finals = {job_id: await clara.wait_stopped(job_id, within=60) for job_id in job_ids}
                for job_id, final in finals.items():
                    assert final.status in (pb.JOB_STATUS_HEALTHY, pb.JOB_STATUS_EVICTED), final
                    statuses = {op.name: op.status for op in final.operator_details}
                    if final.status == pb.JOB_STATUS_HEALTHY:
                        assert set(statuses.values()) == {pb.JOB_OPERATOR_STATUS_COMPLETED}
                        assert await clara.logs(job_id, "first") == ["first"]
                        assert await clara.logs(job_id, "second") == ["done", "second"]
                    else:
                        assert any("lost" in m for m in final.messages), final.messages
                        await clara.logs(job_id, "first")  # readable, whatever it holds
                healthy = sum(f.status == pb.JOB_STATUS_HEALTHY for f in finals.values())
                assert healthy >= JOBS // 2, f"only {healthy} of {JOBS} jobs completed"
    if not is_postgres(database):  # PostgreSQL is crash safe by itself; a SQLite file must prove it
        assert query(database, "PRAGMA integrity_check") == [("ok",)]
    for job_id in job_ids:
        if runtime == "docker":
            assert containers_of(job_id) == []
        else:
            assert find_sandbox(job_id, "first") is None and find_sandbox(job_id, "second") is None
