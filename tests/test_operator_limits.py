"""What a hostile operator may leave behind, on both runtimes, through the real services: no setuid or
root-owned file in the payload tree, outputs held to the job's quota, logs held to their cap (with a job
message), and hostile paths refused before any job exists."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protos.nvidia.clara.platform import jobs_pb2 as pb
from protos.nvidia.clara.platform import pipelines_pb2 as ppb
from tests.jobs_flow import Platform, one_operator, run_job, serving

MIB = 1024 * 1024
QUOTA_MB = 5
LOG_CAP_MB = 1


@pytest.fixture(params=["sandbox", pytest.param("docker", marks=pytest.mark.docker)])
async def clara(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Platform]:
    """A real server on either runtime, with a small output quota and log cap."""
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
    async with serving(tmp_path, runtime=request.param, max_output_mb=QUOTA_MB, max_log_mb=LOG_CAP_MB) as platform:
        yield platform


async def run(clara: Platform, command: str) -> tuple[pb.JobsStatusResponse, str]:
    return await run_job(clara, one_operator(command))


def payload_tree(tmp_path: Path, payload_id: str) -> Path:
    return tmp_path / "data" / "payloads" / payload_id


@pytest.mark.skipif(os.geteuid() != 0, reason="the platform's set-up runs it as root")
async def test_7_no_setuid_and_no_root_owned_file_is_left_in_the_payload(clara: Platform, tmp_path: Path) -> None:
    command = (
        "cp /bin/sh /output/suid && chmod 4755 /output/suid && chmod g+s /output/suid;"
        " mkdir /output/folder && chmod 2775 /output/folder;"
        " cp /bin/sh /output/folder/sgid && chmod 2755 /output/folder/sgid;"
        " ln -s /etc/passwd /output/link; ls -ln /output"
    )
    final, payload_id = await run(clara, command)
    assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
    outputs = payload_tree(tmp_path, payload_id) / "operators" / "op"
    found = [outputs, *outputs.rglob("*")]
    assert {p.name for p in found} >= {"suid", "folder", "sgid", "link"}
    for path in found:
        info = path.lstat()
        assert not info.st_mode & (stat.S_ISUID | stat.S_ISGID), f"{path} keeps {stat.filemode(info.st_mode)}"
        assert info.st_uid != 0, f"{path} is owned by root"
    assert os.stat("/etc/passwd").st_uid == 0  # the link was not followed
    assert stat.S_IMODE((tmp_path / "data" / "payloads").stat().st_mode) == 0o700


async def test_12_outputs_over_the_quota_fault_a_running_operator(clara: Platform) -> None:
    command = f"head -c {2 * QUOTA_MB * MIB} /dev/zero > /output/big; sleep 30"
    job = await clara.job(await clara.pipeline(one_operator(command)))
    await clara.start(job.job_id.value)
    final = await clara.wait_stopped(job.job_id.value, within=15)
    assert final.status == pb.JOB_STATUS_FAULTED
    assert any(f"over its quota of {QUOTA_MB} MiB" in m for m in final.messages), final.messages
    # The job is recorded as ended first; its operator's end once the runtime stopped it.
    await clara.wait_operator(job.job_id.value, "op", pb.JOB_OPERATOR_STATUS_FAULTED)


async def test_12_outputs_over_the_quota_fault_an_operator_that_ended_at_once(clara: Platform) -> None:
    final, _ = await run(clara, f"head -c {2 * QUOTA_MB * MIB} /dev/zero > /output/big")
    assert final.status == pb.JOB_STATUS_FAULTED
    assert any(f"over its quota of {QUOTA_MB} MiB" in m for m in final.messages), final.messages


async def test_12_outputs_under_the_quota_are_fine(clara: Platform) -> None:
    final, payload_id = await run(clara, f"head -c {QUOTA_MB * MIB // 2} /dev/zero > /output/half")
    assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
    assert len(await clara.download(payload_id, "/operators/op/half")) == QUOTA_MB * MIB // 2


async def test_11_a_log_over_its_cap_is_cut_with_a_marker_and_a_job_message(clara: Platform) -> None:
    job = await clara.job(await clara.pipeline(one_operator(f"yes 0123456789abcdef | head -c {5 * LOG_CAP_MB * MIB}")))
    await clara.start(job.job_id.value)
    final = await clara.wait_stopped(job.job_id.value)
    assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
    assert any(f"log truncated at {LOG_CAP_MB} MiB" in m for m in final.messages), final.messages
    lines = await clara.logs(job.job_id.value, "op")
    assert (
        lines[-1] == f"[claret: log truncated at {LOG_CAP_MB * MIB} bytes; the operator's further output was dropped]"
    )
    kept = sum(len(line) + 1 for line in lines[:-2])
    assert LOG_CAP_MB * MIB - 17 <= kept <= LOG_CAP_MB * MIB


@pytest.mark.parametrize("path", ["/../oldroot/tmp/claret-escape/a", "/output/../../x", "relative/out"])
async def test_3_paths_that_climb_are_refused_at_create(clara: Platform, path: str) -> None:
    async def requests() -> AsyncIterator[ppb.PipelinesCreateRequest]:
        yield ppb.PipelinesCreateRequest(
            definition=ppb.PipelineDefinitionFile(path="p.yaml", content=one_operator("true", output=path))
        )

    reply = await clara.pipelines.Create(requests())
    assert reply.header.code < 0
    assert any(repr(path) in m for m in reply.header.messages), reply.header.messages
