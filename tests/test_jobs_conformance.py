"""Jobs as the platform's API describes them: List without a filter, the `started` time, and a job's end
recorded with its operators' ends."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from claret.cli import main
from protos.nvidia.clara.platform import jobs_pb2 as pb
from tests.helpers import RunningServer, run_official
from tests.jobs_flow import Platform, one_operator, serving

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)

QUICK = one_operator("echo done")
SLOW = one_operator("echo sleeping; sleep 60")
STUBBORN = one_operator("trap '' TERM; echo stubborn; sleep 60")
"""Ignores the stop signal: it goes only when the grace period ends with a kill."""


def cli(address: str, *args: str) -> str:
    result = CliRunner().invoke(main, ["--host", address, *args], catch_exceptions=False)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def test_list_without_filter_answers_the_running_jobs(
    served: RunningServer, official_python: Path, tmp_path: Path
) -> None:
    (tmp_path / "quick.yaml").write_text(QUICK)
    (tmp_path / "slow.yaml").write_text(SLOW)
    result = run_official(
        official_python, "list_jobs.py", served.address, str(tmp_path / "quick.yaml"), str(tmp_path / "slow.yaml")
    )
    assert isinstance(result, dict)
    ids = result["ids"]
    assert result["no_filter"] == [ids["running"]]
    assert result["empty_filter"] == [ids["running"]]
    assert result["every_state"] == sorted(ids.values())

    # The CLI lists every job unless told --running, in a table and as JSON alike.
    table = cli(served.address, "list", "jobs")
    assert all(job_id in table for job_id in ids.values())
    running = cli(served.address, "list", "jobs", "--running")
    assert ids["running"] in running and ids["pending"] not in running and ids["stopped"] not in running
    assert {j["job_id"] for j in json.loads(cli(served.address, "list", "jobs", "--output", "json"))} == set(
        ids.values()
    )
    listed = json.loads(cli(served.address, "list", "jobs", "--running", "--output", "json"))
    assert [j["job_id"] for j in listed] == [ids["running"]]
    cli(served.address, "stop", "job", ids["running"])


@pytest.fixture
async def one_cpu(tmp_path: Path) -> AsyncIterator[Platform]:
    async with serving(tmp_path, cpus=1, stop_grace=3.0) as platform:
        yield platform


async def test_started_is_when_the_first_operator_started(one_cpu: Platform) -> None:
    clara = one_cpu
    blocker = await clara.job(await clara.pipeline(SLOW))
    await clara.start(blocker.job_id.value)
    await clara.wait_operator(blocker.job_id.value, "op", pb.JOB_OPERATOR_STATUS_RUNNING)
    waiting = await clara.job(await clara.pipeline(QUICK))
    await clara.start(waiting.job_id.value)
    await asyncio.sleep(0.3)  # it stays queued: the blocker holds the only cpu

    queued = await clara.status(waiting.job_id.value)
    assert queued.state == pb.JOB_STATE_PENDING
    assert queued.started.value == 0 and queued.timestamp_started == ""
    listed = [
        reply.job_details
        async for reply in clara.jobs.List(pb.JobsListRequest(filter=pb.JobsListRequest.JobFilter(has_state=[1])))
    ]
    assert [(d.job_id.value, d.started.value) for d in listed] == [(waiting.job_id.value, 0)]

    await clara.jobs.Cancel(pb.JobsCancelRequest(job_id=blocker.job_id))
    done = await clara.wait_stopped(waiting.job_id.value)
    assert done.status == pb.JOB_STATUS_HEALTHY
    (operator,) = done.operator_details
    assert done.started.value == operator.started.value >= queued.created.value
    assert done.timestamp_started != ""


@pytest.mark.parametrize("ending", ["cancel", "timeout"])
async def test_a_stopped_job_never_shows_a_running_operator(one_cpu: Platform, ending: str) -> None:
    clara = one_cpu
    text = STUBBORN.replace("name: one", "name: one\ntimeout: 1") if ending == "timeout" else STUBBORN
    job = await clara.job(await clara.pipeline(text))
    job_id = job.job_id.value
    await clara.start(job_id)
    await clara.wait_operator(job_id, "op", pb.JOB_OPERATOR_STATUS_RUNNING)
    if ending == "cancel":
        await clara.jobs.Cancel(pb.JobsCancelRequest(job_id=job.job_id))
    seen = []
    deadline = time.monotonic() + 8  # past the 3 s grace, when the operator is killed
    while time.monotonic() < deadline:
        status = await clara.status(job_id)
        seen.append((status.state, [op.status for op in status.operator_details]))
        await asyncio.sleep(0.02)
    stopped = [operators for state, operators in seen if state == pb.JOB_STATE_STOPPED]
    assert stopped, "the job never stopped"
    assert all(pb.JOB_OPERATOR_STATUS_RUNNING not in operators for operators in stopped), seen
    final = await clara.status(job_id)
    (operator,) = final.operator_details
    assert operator.status == pb.JOB_OPERATOR_STATUS_FAULTED
    assert operator.started.value <= operator.stopped.value <= final.stopped.value
