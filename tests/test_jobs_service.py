"""Jobs over the real services with real sandboxed operators (bubblewrap): DAGs, failures, cancel, logs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protos.nvidia.clara.platform import common_pb2
from protos.nvidia.clara.platform import jobs_pb2 as pb
from shared.errors import ErrorCode
from tests.jobs_flow import DATA, Platform, containers_of, process_alive, serving

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)


@pytest.fixture(params=["sandbox", pytest.param("docker", marks=pytest.mark.docker)])
async def clara(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Platform]:
    """The same scenarios on both runtimes: a real server with the sandbox or the Docker runtime."""
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
    async with serving(tmp_path, runtime=request.param) as platform:
        yield platform


def operator_alive(clara: Platform, job_id: str, runtime_id: str) -> bool:
    """A sandbox process group still there, or any container of the job still there (running or not)."""
    if clara.runtime == "docker":
        return bool(containers_of(job_id))
    return process_alive(runtime_id)


def in_order(lines: list[str], expected: list[str], runtime: str) -> bool:
    """The sandbox writes both streams into one file, so their order is exact. Docker copies stdout and
    stderr through separate pipes: each stream keeps its order, lines written microseconds apart on the two
    may swap."""
    if runtime == "sandbox":
        return lines == expected
    streams = [[line for line in expected if line.startswith(prefix)] for prefix in ("out", "err")]
    return sorted(lines) == sorted(expected) and all(
        [line for line in lines if line in stream] == stream for stream in streams
    )


def one_operator(command: str, name: str = "op", extra: str = "") -> str:
    return f"""api-version: 0.4.0
name: single
{extra}
operators:
- name: {name}
  container:
    image: busybox
    command: ["sh", "-c", {command!r}]
  input: [{{path: /input}}]
  output: [{{path: /output}}]
"""


async def test_two_operators_copy_and_transform_uploaded_files(clara: Platform) -> None:
    job = await clara.job(await clara.pipeline((DATA / "two_operators.yaml").read_text()))
    await clara.upload(job.payload_id.value, "hello.txt", b"hello world\n")
    await clara.upload(job.payload_id.value, "sub/dir.txt", b"nested\n")
    started = await clara.start(job.job_id.value)
    assert started.header.code == 0, started.header.messages
    assert started.state in (pb.JOB_STATE_PENDING, pb.JOB_STATE_RUNNING)
    final = await clara.wait_stopped(job.job_id.value)
    assert (final.state, final.status) == (pb.JOB_STATE_STOPPED, pb.JOB_STATUS_HEALTHY), final.messages
    payload = job.payload_id.value
    assert await clara.download(payload, "/operators/copier/hello.txt") == b"hello world\n"
    assert await clara.download(payload, "/operators/shouter/hello.txt.upper") == b"HELLO WORLD\n"
    assert [(op.name, op.status) for op in final.operator_details] == [
        ("copier", pb.JOB_OPERATOR_STATUS_COMPLETED),
        ("shouter", pb.JOB_OPERATOR_STATUS_COMPLETED),
    ]
    for op in final.operator_details:
        assert op.created.value <= op.started.value <= op.stopped.value
    assert [(n.name, [d.name for d in n.input_dependencies]) for n in final.dag] == [
        ("copier", []),
        ("shouter", ["copier"]),
    ]
    assert final.timestamp_stopped.endswith("Z") and final.stopped.value >= final.started.value > 0
    logs = await clara.logs(job.job_id.value, "copier")
    assert "copied 2 files" in logs and "to-stderr" in logs


async def test_diamond_runs_middle_branches_in_parallel(clara: Platform) -> None:
    job = await clara.job(await clara.pipeline((DATA / "diamond.yaml").read_text()))
    await clara.upload(job.payload_id.value, "x.txt", b"x\n")
    await clara.start(job.job_id.value)
    final = await clara.wait_stopped(job.job_id.value)
    assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
    payload = job.payload_id.value
    times = {}
    for branch in ("left", "right"):
        start = float(await clara.download(payload, f"/operators/{branch}/start"))
        end = float(await clara.download(payload, f"/operators/{branch}/end"))
        times[branch] = (start, end)
    overlap = min(times["left"][1], times["right"][1]) - max(times["left"][0], times["right"][0])
    assert overlap > 0.5, f"branches overlapped for {overlap:.2f} s only: {times}"
    assert await clara.download(payload, "/operators/join/joined.txt") == b"x\nx\n"


async def test_failing_operator_faults_the_job_and_downstream_never_starts(clara: Platform) -> None:
    text = (DATA / "two_operators.yaml").read_text().replace("cp -r /input/. /output/", "echo broken >&2; exit 7")
    job = await clara.job(await clara.pipeline(text))
    await clara.start(job.job_id.value)
    final = await clara.wait_stopped(job.job_id.value)
    assert final.status == pb.JOB_STATUS_FAULTED
    assert any("copier" in m and "7" in m for m in final.messages), final.messages
    statuses = {op.name: op.status for op in final.operator_details}
    assert statuses == {"copier": pb.JOB_OPERATOR_STATUS_FAULTED, "shouter": pb.JOB_OPERATOR_STATUS_PENDING}
    assert "broken" in await clara.logs(job.job_id.value, "copier")
    assert await clara.logs(job.job_id.value, "shouter") == []


async def test_cancel_of_a_running_job_kills_its_processes(clara: Platform) -> None:
    job = await clara.job(await clara.pipeline(one_operator("trap '' TERM; echo started; sleep 300")))
    await clara.start(job.job_id.value)
    await clara.wait_operator(job.job_id.value, "op", pb.JOB_OPERATOR_STATUS_RUNNING)
    runtime_id = await clara.wait_runtime_id(job.job_id.value, "op")
    assert operator_alive(clara, job.job_id.value, runtime_id)
    reply = await clara.jobs.Cancel(pb.JobsCancelRequest(job_id=job.job_id, reason="test"))
    assert (reply.job_state, reply.job_status) == (pb.JOB_STATE_STOPPED, pb.JOB_STATUS_CANCELED)
    for _ in range(100):  # the grace period (1 s in tests) then a kill
        if not operator_alive(clara, job.job_id.value, runtime_id):
            break
        await asyncio.sleep(0.1)
    assert not operator_alive(clara, job.job_id.value, runtime_id)
    final = await clara.status(job.job_id.value)
    assert final.status == pb.JOB_STATUS_CANCELED and any("test" in m for m in final.messages)


async def test_cancel_of_a_job_that_was_never_started(clara: Platform) -> None:
    job = await clara.job(await clara.pipeline(one_operator("true")))
    reply = await clara.jobs.Cancel(pb.JobsCancelRequest(job_id=job.job_id))
    assert (reply.job_state, reply.job_status) == (pb.JOB_STATE_STOPPED, pb.JOB_STATUS_CANCELED)
    again = await clara.start(job.job_id.value)
    assert again.header.code == ErrorCode.JOB_WRONG_STATE


async def test_timeout_ends_the_job_terminated(clara: Platform) -> None:
    job = await clara.job(await clara.pipeline(one_operator("sleep 60", extra="timeout: 1")))
    await clara.start(job.job_id.value)
    final = await clara.wait_stopped(job.job_id.value, within=15)
    assert final.status == pb.JOB_STATUS_TERMINATED
    assert any("timed out" in m for m in final.messages)


async def test_logs_during_and_after_the_run(clara: Platform) -> None:
    command = "echo out-1; echo err-1 >&2; echo out-2; touch /output/ready; sleep 1; echo out-3"
    job = await clara.job(await clara.pipeline(one_operator(command)))
    await clara.start(job.job_id.value)
    await clara.wait_operator(job.job_id.value, "op", pb.JOB_OPERATOR_STATUS_RUNNING)
    await asyncio.sleep(0.5)
    during = await clara.logs(job.job_id.value, "op")
    assert in_order(during, ["out-1", "err-1", "out-2"], clara.runtime)
    await clara.wait_stopped(job.job_id.value)
    assert in_order(await clara.logs(job.job_id.value, "OP"), ["out-1", "err-1", "out-2", "out-3"], clara.runtime)
    request = pb.JobsReadLogsRequest(job_id=job.job_id, operator_name="nobody")
    (reply,) = [r async for r in clara.jobs.ReadLogs(request)]
    assert reply.header.code == ErrorCode.NO_SUCH_OPERATOR and "op" in reply.header.messages[0]


async def test_operator_environment(clara: Platform) -> None:
    text = one_operator("env | sort > /output/env.txt").replace(
        "  input:", "  variables: {GREETING: hello, COUNT: 3}\n  input:"
    )
    pipeline_id = await clara.pipeline(text)
    job = await clara.job(pipeline_id, name="env job")
    await clara.start(job.job_id.value)
    assert (await clara.wait_stopped(job.job_id.value)).status == pb.JOB_STATUS_HEALTHY
    env = dict(
        line.split("=", 1)
        for line in (await clara.download(job.payload_id.value, "/operators/op/env.txt")).decode().splitlines()
    )
    assert env["GREETING"] == "hello" and env["COUNT"] == "3"
    assert env["NVIDIA_CLARA_JOB_ID"] == job.job_id.value
    assert env["NVIDIA_CLARA_JOB_NAME"] == "env job"
    assert env["NVIDIA_CLARA_STAGE_NAME"] == "op"
    assert env["NVIDIA_CLARA_PAYLOAD_ID"] == job.payload_id.value
    assert env["NVIDIA_CLARA_PIPELINE_ID"] == pipeline_id
    assert (env["NVIDIA_CLARA_INPUT"], env["NVIDIA_CLARA_OUTPUT"]) == ("/input", "/output")
    assert env["NVIDIA_CLARA_NOSYNCLOCK"] == "1"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void"


async def test_payload_is_read_only_once_started(clara: Platform) -> None:
    job = await clara.job(await clara.pipeline(one_operator("sleep 5")))
    await clara.start(job.job_id.value)
    from protos.nvidia.clara.platform import payloads_pb2

    async def late_upload() -> AsyncIterator[payloads_pb2.PayloadsUploadRequest]:
        yield payloads_pb2.PayloadsUploadRequest(
            payload_id=job.payload_id, details=payloads_pb2.PayloadFileDetails(name="late.txt"), data=b"x"
        )

    reply = await clara.payloads.Upload(late_upload())
    assert reply.header.code == ErrorCode.PAYLOAD_READ_ONLY
    deleted = await clara.payloads.Delete(payloads_pb2.PayloadsDeleteRequest(payload_id=job.payload_id))
    assert deleted.header.code == ErrorCode.PAYLOAD_READ_ONLY
    await clara.jobs.Cancel(pb.JobsCancelRequest(job_id=job.job_id))


async def test_start_refuses_undeclared_variables_and_resolves_templates(clara: Platform) -> None:
    text = one_operator("echo $WHO > /output/who.txt", extra="parameters:\n  who: world").replace(
        "  input:", "  variables: {WHO: '${{ who }}'}\n  input:"
    )
    job = await clara.job(await clara.pipeline(text))
    refused = await clara.start(job.job_id.value, nobody="x")
    assert refused.header.code == ErrorCode.INVALID_VARIABLES and "nobody" in refused.header.messages[0]
    assert (await clara.start(job.job_id.value, who="claret")).header.code == 0
    await clara.wait_stopped(job.job_id.value)
    assert await clara.download(job.payload_id.value, "/operators/op/who.txt") == b"claret\n"


async def test_operator_that_can_never_fit_is_refused_at_start(clara: Platform) -> None:
    text = one_operator("true").replace("  input:", "  requests: {gpu: 1}\n  input:")
    job = await clara.job(await clara.pipeline(text))
    reply = await clara.start(job.job_id.value)
    assert reply.header.code == ErrorCode.JOB_CANNOT_FIT
    assert "GPU" in reply.header.messages[0]
    assert (await clara.status(job.job_id.value)).state == pb.JOB_STATE_PENDING


async def test_list_filters(clara: Platform) -> None:
    first = await clara.pipeline(one_operator("true"))
    second = await clara.pipeline(one_operator("exit 1"))
    done = await clara.job(first, name="done")
    failed = await clara.job(second, name="failed")
    waiting = await clara.job(first, name="waiting")
    for job in (done, failed):
        await clara.start(job.job_id.value)
        await clara.wait_stopped(job.job_id.value)

    async def names(**fields: object) -> list[str]:
        request = pb.JobsListRequest(filter=pb.JobsListRequest.JobFilter(**fields))  # type: ignore[arg-type]
        return sorted([r.job_details.job_name async for r in clara.jobs.List(request)])

    assert await names() == []  # no filter: the running jobs, and none runs
    every_state = [pb.JOB_STATE_PENDING, pb.JOB_STATE_RUNNING, pb.JOB_STATE_STOPPED]
    assert await names(has_state=every_state) == ["done", "failed", "waiting"]
    assert await names(has_state=[pb.JOB_STATE_STOPPED]) == ["done", "failed"]
    assert await names(has_status=[pb.JOB_STATUS_FAULTED, pb.JOB_STATUS_HEALTHY]) == ["done", "failed", "waiting"]
    assert await names(has_state=[pb.JOB_STATE_STOPPED], pipeline_id=[common_pb2.Identifier(value=first)]) == ["done"]
    assert await names(has_state=[pb.JOB_STATE_PENDING]) == ["waiting"]
    assert waiting.job_id.value


async def test_job_create_errors(clara: Platform) -> None:
    pipeline_id = await clara.pipeline(one_operator("true"))
    for name, pipeline, code in [
        ("", pipeline_id, ErrorCode.INVALID_JOB_NAME),
        ("x" * 256, pipeline_id, ErrorCode.INVALID_JOB_NAME),
        ("bad\nname", pipeline_id, ErrorCode.INVALID_JOB_NAME),
        ("ok", "0" * 32, ErrorCode.NO_SUCH_PIPELINE),
        ("ok", "zzz", ErrorCode.INVALID_PIPELINE_ID),
    ]:
        reply = await clara.jobs.Create(
            pb.JobsCreateRequest(pipeline_id=common_pb2.Identifier(value=pipeline), name=name)
        )
        assert reply.header.code == code and reply.header.messages, (name, pipeline, reply.header)
    status = await clara.jobs.Status(pb.JobsStatusRequest(job_id=common_pb2.Identifier(value="f" * 32)))
    assert status.header.code == ErrorCode.NO_SUCH_JOB


async def test_reusable_input_payloads_are_copied_in_order(clara: Platform) -> None:
    from protos.nvidia.clara.platform import payloads_pb2

    pipeline_id = await clara.pipeline(one_operator("ls /input > /output/listing.txt"))
    sources = []
    for name in ("a.txt", "b.txt"):
        created = await clara.payloads.Create(payloads_pb2.PayloadsCreateRequest())
        await clara.upload(created.payload_id.value, name, name.encode())
        sources.append(created.payload_id)
    reply = await clara.jobs.Create(
        pb.JobsCreateRequest(
            pipeline_id=common_pb2.Identifier(value=pipeline_id), name="inputs", input_payloads=sources
        )
    )
    assert reply.header.code == 0, reply.header.messages
    await clara.start(reply.job_id.value)
    await clara.wait_stopped(reply.job_id.value)
    assert await clara.download(reply.payload_id.value, "/operators/op/listing.txt") == b"a.txt\nb.txt\n"
    clash = await clara.jobs.Create(
        pb.JobsCreateRequest(
            pipeline_id=common_pb2.Identifier(value=pipeline_id), name="clash", input_payloads=[sources[0], sources[0]]
        )
    )
    assert clash.header.code == ErrorCode.INVALID_FILE_NAME and "a.txt" in clash.header.messages[0]


@pytest.fixture
async def gpu_clara(tmp_path: Path) -> AsyncIterator[Platform]:
    async with serving(tmp_path, gpus=("0", "1")) as platform:
        yield platform


async def test_one_gpu_operators_on_two_gpus_never_share_a_device(gpu_clara: Platform) -> None:
    command = (
        "echo $NVIDIA_VISIBLE_DEVICES $CUDA_VISIBLE_DEVICES > /output/gpu; cut -d' ' -f1 /proc/uptime >> /output/gpu; "
        "sleep 0.6; cut -d' ' -f1 /proc/uptime >> /output/gpu"
    )
    text = one_operator(command).replace("  input:", "  requests: {gpu: 1, cpu: 0, memory: 1}\n  input:")
    pipeline_id = await gpu_clara.pipeline(text)
    jobs = [await gpu_clara.job(pipeline_id, name=f"gpu-{i}") for i in range(4)]
    for job in jobs:
        assert (await gpu_clara.start(job.job_id.value)).header.code == 0
    runs = []
    for job in jobs:
        assert (await gpu_clara.wait_stopped(job.job_id.value)).status == pb.JOB_STATUS_HEALTHY
        devices, start, end = (
            (await gpu_clara.download(job.payload_id.value, "/operators/op/gpu")).decode().split("\n")[:3]
        )
        nvidia, cuda = devices.split()
        assert nvidia == cuda and nvidia in ("0", "1")
        runs.append((nvidia, float(start), float(end)))
    for i, (device, start, end) in enumerate(runs):
        for other_device, other_start, other_end in runs[i + 1 :]:
            if device == other_device:
                assert end <= other_start or other_end <= start, runs
    assert max(start for _, start, _ in runs) > min(end for _, _, end in runs)  # two at a time, not four


async def test_immediate_jumps_the_queue(gpu_clara: Platform) -> None:
    command = "cut -d' ' -f1 /proc/uptime > /output/t; sleep 0.3"
    text = one_operator(command).replace("  input:", "  requests: {gpu: 2, cpu: 0, memory: 1}\n  input:")
    pipeline_id = await gpu_clara.pipeline(text)
    blocker = await gpu_clara.job(pipeline_id, name="blocker")
    await gpu_clara.start(blocker.job_id.value)
    await gpu_clara.wait_operator(blocker.job_id.value, "op", pb.JOB_OPERATOR_STATUS_RUNNING)
    normal = [await gpu_clara.job(pipeline_id, name=f"normal-{i}") for i in range(2)]
    urgent = await gpu_clara.job(pipeline_id, name="urgent", priority=pb.JOB_PRIORITY_IMMEDIATE)
    for job in [*normal, urgent]:
        await gpu_clara.start(job.job_id.value)
    started = {}
    for job in [blocker, *normal, urgent]:
        await gpu_clara.wait_stopped(job.job_id.value)
        started[job.job_id.value] = float(await gpu_clara.download(job.payload_id.value, "/operators/op/t"))
    assert started[urgent.job_id.value] < min(started[j.job_id.value] for j in normal)


async def test_operators_run_without_privileges_or_network(clara: Platform) -> None:
    command = (
        "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status > /output/status; "
        "(wget -q -T 2 -O /dev/null http://1.1.1.1 2>/dev/null && echo online || echo offline) > /output/net; "
        "(touch /input/new 2>/dev/null && echo writable || echo read-only) > /output/input"
    )
    job = await clara.job(await clara.pipeline(one_operator(command)))
    await clara.upload(job.payload_id.value, "x.txt", b"x")
    await clara.start(job.job_id.value)
    assert (await clara.wait_stopped(job.job_id.value)).status == pb.JOB_STATUS_HEALTHY
    status = dict(
        line.split(":\t")
        for line in (await clara.download(job.payload_id.value, "/operators/op/status")).decode().splitlines()
    )
    assert int(status["CapEff"], 16) == 0 and status["NoNewPrivs"] == "1"
    assert await clara.download(job.payload_id.value, "/operators/op/net") == b"offline\n"
    assert await clara.download(job.payload_id.value, "/operators/op/input") == b"read-only\n"
