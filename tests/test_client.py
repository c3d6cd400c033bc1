"""The typed async client (claret.client) and its records (claret.records): the mapping from the wire's
messages, then every call against a real server in this event loop (sandboxed operators)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from claret import client as client_module
from claret.client import ALL_STATES, ClientError, PlatformClient, Security
from claret.records import (
    DOTNET_EPOCH,
    Gpu,
    Job,
    JobState,
    JobStatus,
    OperatorStatus,
    Payload,
    PayloadType,
    Pipeline,
    PipelineNode,
    PlatformVersion,
    Priority,
    WireEnum,
    moment,
)
from protos.nvidia.clara.platform import clara_pb2, common_pb2, jobs_pb2, payloads_pb2, pipelines_pb2
from shared.errors import ErrorCode
from tests.helpers import make_settings, start_in_process
from tests.jobs_flow import DATA

WIRE_ENUMS = [
    (JobState, jobs_pb2.JobState),
    (JobStatus, jobs_pb2.JobStatus),
    (OperatorStatus, jobs_pb2.JobOperatorStatus),
    (Priority, jobs_pb2.JobPriority),
    (PayloadType, payloads_pb2.PayloadType),
]
CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def stamp(when: datetime | None) -> common_pb2.Timestamp:
    """A wire time: seconds since 0001-01-01 UTC, 0 for none."""
    return common_pb2.Timestamp(value=0 if when is None else int((when - DOTNET_EPOCH).total_seconds()))


def later(seconds: int) -> datetime:
    return datetime.fromtimestamp(CREATED.timestamp() + seconds, UTC)


# The enums


@pytest.mark.parametrize(("enum", "wire"), WIRE_ENUMS, ids=lambda e: getattr(e, "__name__", ""))
def test_each_enum_has_every_wire_value_under_its_proto_name(enum: type[WireEnum], wire: object) -> None:
    assert {member.wire_name: member.value for member in enum} == dict(wire.items())  # type: ignore[attr-defined]
    assert not any(member.name.startswith(("JOB_", "PAYLOAD_")) for member in enum)  # the prefix is dropped


def test_members_are_the_wire_numbers_and_unknown_numbers_read_as_unknown() -> None:
    assert [state.name for state in JobState] == ["UNKNOWN", "PENDING", "RUNNING", "STOPPED"]
    assert JobState.STOPPED == jobs_pb2.JOB_STATE_STOPPED and JobState(jobs_pb2.JOB_STATE_STOPPED) is JobState.STOPPED
    assert OperatorStatus.COMPLETED.wire_name == "JOB_OPERATOR_STATUS_COMPLETED"
    assert Priority.HIGHER.wire_name == "JOB_PRIORITY_HIGHER" and PayloadType.REUSABLE == 2
    assert JobState(99) is JobState.UNKNOWN  # a newer platform's value: proto3 enums are open
    assert Job.from_status(jobs_pb2.JobsStatusResponse(state=99, status=42)).state is JobState.UNKNOWN
    assert ALL_STATES == (JobState.PENDING, JobState.RUNNING, JobState.STOPPED)
    with pytest.raises(AttributeError, match="JobState has no member 'STOPED'; it has UNKNOWN, PENDING, RUNNING"):
        JobState.STOPED  # noqa: B018


# The records


def test_a_status_reply_maps_to_a_job_with_its_operators_dag_and_times() -> None:
    details = jobs_pb2.JobsStatusResponse.JobOperatorDetails
    node = jobs_pb2.JobsStatusResponse.JobDagNode
    reply = jobs_pb2.JobsStatusResponse(
        job_id=common_pb2.Identifier(value="a" * 32),
        pipeline_id=common_pb2.Identifier(value="b" * 32),
        payload_id=common_pb2.Identifier(value="c" * 32),
        name="scan",
        state=jobs_pb2.JOB_STATE_STOPPED,
        status=jobs_pb2.JOB_STATUS_FAULTED,
        priority=jobs_pb2.JOB_PRIORITY_IMMEDIATE,
        created=stamp(CREATED),
        started=stamp(later(2)),
        stopped=stamp(later(9)),
        operator_details=[
            details(
                name="reader",
                status=jobs_pb2.JOB_OPERATOR_STATUS_COMPLETED,
                created=stamp(CREATED),
                started=stamp(later(2)),
                stopped=stamp(later(5)),
            ),
            details(
                name="writer",
                status=jobs_pb2.JOB_OPERATOR_STATUS_FAULTED,
                created=stamp(CREATED),
                started=stamp(later(5)),
                stopped=stamp(later(9)),
            ),
            details(name="never", status=jobs_pb2.JOB_OPERATOR_STATUS_PENDING, created=stamp(CREATED)),
        ],
        dag=[
            node(name="reader"),
            node(name="writer", input_dependencies=[node(name="reader")], order_dependencies=[node(name="x")]),
        ],
        metadata={"study": "42"},
        messages=["operator 'writer' exited with code 3"],
    )
    job = Job.from_status(reply)
    assert (job.id, job.name, job.pipeline_id, job.payload_id) == ("a" * 32, "scan", "b" * 32, "c" * 32)
    assert (job.state, job.status, job.priority) == (JobState.STOPPED, JobStatus.FAULTED, Priority.IMMEDIATE)
    assert (job.created, job.started, job.stopped) == (CREATED, later(2), later(9))
    assert [(op.name, op.status, op.done) for op in job.operators] == [
        ("reader", OperatorStatus.COMPLETED, True),
        ("writer", OperatorStatus.FAULTED, True),
        ("never", OperatorStatus.PENDING, False),
    ]
    assert (job.operators[1].started, job.operators[1].stopped) == (later(5), later(9))
    assert (job.operators[2].started, job.operators[2].stopped) == (None, None)  # 0 on the wire: not yet
    assert [(n.name, n.input_dependencies, n.order_dependencies) for n in job.dag] == [
        ("reader", (), ()),
        ("writer", ("reader",), ("x",)),
    ]
    assert job.metadata == {"study": "42"} and job.messages == ("operator 'writer' exited with code 3",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        job.metadata["study"] = "43"  # type: ignore[index]


def test_a_listed_job_has_no_operators_and_unset_times_are_none() -> None:
    details = jobs_pb2.JobsListResponse.JobDetails(
        job_id=common_pb2.Identifier(value="d" * 32),
        job_name="queued",
        state=jobs_pb2.JOB_STATE_PENDING,
        status=jobs_pb2.JOB_STATUS_HEALTHY,
        priority=jobs_pb2.JOB_PRIORITY_LOWER,
        created=stamp(CREATED),
    )
    job = Job.from_list(details)
    assert (job.id, job.name, job.state, job.priority) == ("d" * 32, "queued", JobState.PENDING, Priority.LOWER)
    assert (job.created, job.started, job.stopped) == (CREATED, None, None)
    assert (job.operators, job.dag, job.messages, dict(job.metadata)) == ((), (), (), {})


def test_pipeline_payload_gpu_and_version_records() -> None:
    dag_node = pipelines_pb2.PipelinesDetailsResponse.PipelineDagNode
    dag = [dag_node(name="producer", next=[dag_node(name="consumer")])]
    replies = [
        pipelines_pb2.PipelinesDetailsResponse(
            pipeline_id=common_pb2.Identifier(value="e" * 32),
            name="sample",
            definition=pipelines_pb2.PipelineDefinitionFile(path=path, content=f"# {path}\n"),
            dag=dag,
            metadata={"k": "v"},
        )
        for path in ("pipeline.yaml", "producer.yaml")
    ]
    pipeline = Pipeline.from_details("e" * 32, replies)
    assert (pipeline.id, pipeline.name, dict(pipeline.metadata)) == ("e" * 32, "sample", {"k": "v"})
    assert pipeline.dag == (PipelineNode("producer", (PipelineNode("consumer"),)),)
    assert [(f.path, f.content) for f in pipeline.files] == [
        ("pipeline.yaml", "# pipeline.yaml\n"),
        ("producer.yaml", "# producer.yaml\n"),
    ]
    assert Pipeline.from_details("f" * 32, []) == Pipeline("f" * 32, "")

    files = [
        payloads_pb2.PayloadsDetailsResponse(
            payload_id=common_pb2.Identifier(value="1" * 32),
            file=payloads_pb2.PayloadFileDetails(name=name, size=size, mode=0o644),
            type=payloads_pb2.PAYLOAD_TYPE_PIPELINE,
            job_id=common_pb2.Identifier(value="2" * 32),
        )
        for name, size in (("/input/a.txt", 6), ("/operators/op/b", 0))
    ]
    payload = Payload.from_details("1" * 32, files)
    assert (payload.type, payload.job_id) == (PayloadType.PIPELINE, "2" * 32)
    assert [(f.name, f.size, f.mode) for f in payload.files] == [
        ("/input/a.txt", 6, 0o644),
        ("/operators/op/b", 0, 0o644),
    ]
    empty = Payload.from_details("3" * 32, [])  # an empty payload has no Details message at all
    assert (empty.type, empty.job_id, empty.files) == (PayloadType.UNKNOWN, None, ())

    process = clara_pb2.ClaraUtilizationResponse.GpuUtilization.ProcessDetails(name="op")
    gpu = Gpu.from_wire(
        clara_pb2.ClaraUtilizationResponse.GpuUtilization(
            node_id="n", pcie_id=3, memory_free=10, memory_used=20, process_details=[process], timestamp=stamp(CREATED)
        )
    )
    assert (gpu.pcie_id, gpu.memory_free_mb, gpu.memory_used_mb, gpu.measured) == (3, 10, 20, CREATED)
    assert gpu.processes[0].job_id is None  # no job named: None, not ""
    assert (
        str(PlatformVersion.from_wire(common_pb2.Version(major=0, minor=7, patch=4, label="claret"))) == "0.7.4-claret"
    )
    assert str(PlatformVersion(0, 7, 4)) == "0.7.4"


def test_a_time_past_the_year_9999_is_one_client_error() -> None:
    with pytest.raises(ClientError, match="past the year 9999"):
        moment(common_pb2.Timestamp(value=2**62))


def test_a_token_is_call_metadata() -> None:
    assert Security(token="s3cret").metadata() == (("authorization", "Bearer s3cret"),)
    assert Security().metadata() is None


# Against a server


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[PlatformClient]:
    """The client on a channel of its own to a server running in this event loop."""
    server, resources = await start_in_process(make_settings(tmp_path))
    try:
        async with PlatformClient(f"127.0.0.1:{server.port}", timeout=10) as connected:
            yield connected
    finally:
        await server.stop(grace=1)
        await resources.close()


async def stopped(client: PlatformClient, job_id: str) -> Job:
    for _ in range(300):
        job = await client.job_status(job_id)
        if job.state is JobState.STOPPED:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not stop")


async def test_a_job_from_pipeline_to_download(
    client: PlatformClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "CHUNK_SIZE", 1000)  # several chunks without megabytes of data
    created = await client.create_pipeline([("two.yaml", (DATA / "two_operators.yaml").read_text())])
    assert created.warnings == ()
    job = await client.create_job(created.pipeline_id, "typed", Priority.HIGHER)

    big = bytes(range(256)) * 20  # 5120 bytes: six chunks
    (tmp_path / "big.bin").write_bytes(big)
    sent: list[int] = []
    uploaded = await client.upload(job.payload_id, "big.bin", tmp_path / "big.bin", sent.append)
    assert (uploaded.name, uploaded.size, sent) == ("big.bin", len(big), [1000] * 5 + [120])
    assert (await client.upload(job.payload_id, "small.txt", b"hello\n")).size == 6
    assert (await client.upload(job.payload_id, "empty.txt", b"")).size == 0  # one message naming it

    started = await client.start_job(job.job_id)
    assert started.state in (JobState.PENDING, JobState.RUNNING) and started.priority is Priority.HIGHER
    final = await stopped(client, job.job_id)
    assert (final.status, final.priority, final.payload_id) == (JobStatus.HEALTHY, Priority.HIGHER, job.payload_id)
    assert [(op.name, op.status) for op in final.operators] == [
        ("copier", OperatorStatus.COMPLETED),
        ("shouter", OperatorStatus.COMPLETED),
    ]
    assert final.created is not None and final.started is not None and final.stopped is not None
    assert final.created <= final.started <= final.stopped
    assert [(n.name, n.input_dependencies) for n in final.dag] == [("copier", ()), ("shouter", ("copier",))]

    assert job.job_id in [j.id for j in await client.list_jobs()]  # every state, not only the running ones
    assert job.job_id not in [j.id for j in await client.list_jobs([JobState.RUNNING])]
    assert [j.id for j in await client.list_jobs(statuses=[JobStatus.HEALTHY], pipeline_ids=[created.pipeline_id])] == [
        job.job_id
    ]
    assert await client.resolve_job(job.job_id[:10]) == job.job_id
    assert await client.resolve_payload(job.job_id[:10]) == job.payload_id
    assert await client.resolve_pipeline(created.pipeline_id[:10]) == created.pipeline_id

    files = {f.name: f.size for f in (await client.payload_details(job.payload_id)).files}
    assert files["/input/big.bin"] == len(big) and files["/operators/shouter/small.txt.upper"] == 6
    target = tmp_path / "out" / "deep" / "big.bin"
    got: list[int] = []
    downloaded = await client.download(job.payload_id, "/operators/copier/big.bin", target, got.append)
    assert target.read_bytes() == big and downloaded.size == len(big) and sum(got) == len(big)
    assert [p.name for p in target.parent.iterdir()] == ["big.bin"]  # the temporary was renamed over it
    assert await client.download_bytes(job.payload_id, "/operators/shouter/small.txt.upper") == b"HELLO\n"
    assert [line async for line in client.read_logs(job.job_id, "copier")] == ["copied 3 files", "to-stderr"]

    pipeline = await client.pipeline_details(created.pipeline_id)
    assert [f.path for f in pipeline.files] == ["two.yaml"] and [n.name for n in pipeline.dag] == ["copier"]
    assert created.pipeline_id in [p.id for p in await client.list_pipelines()]


async def test_refusals_carry_the_platforms_code_and_messages(client: PlatformClient) -> None:
    with pytest.raises(ClientError) as missing:
        await client.job_status("0" * 32)
    assert missing.value.code == ErrorCode.NO_SUCH_JOB and missing.value.messages
    assert str(missing.value) == f"no job with id '{'0' * 32}' (code {ErrorCode.NO_SUCH_JOB})"

    pipeline_id = (await client.create_pipeline([("p.yaml", (DATA / "two_operators.yaml").read_text())])).pipeline_id
    job = await client.create_job(pipeline_id, "twice")
    await client.start_job(job.job_id)
    with pytest.raises(ClientError) as again:
        await client.start_job(job.job_id)
    assert again.value.code == ErrorCode.JOB_WRONG_STATE
    # A refusal the platform answers before the upload ended (three chunks into a started job's payload).
    with pytest.raises(ClientError) as read_only:
        await client.upload(job.payload_id, "late.bin", bytes(3 * client_module.CHUNK_SIZE))
    assert read_only.value.code == ErrorCode.PAYLOAD_READ_ONLY
    canceled = await client.cancel_job(job.job_id, "enough")
    assert (canceled.job_id, canceled.state) == (job.job_id, JobState.STOPPED)

    with pytest.raises(ClientError) as ambiguous:
        await client.resolve_pipeline("zz")
    assert ambiguous.value.code == ErrorCode.INVALID_PIPELINE_ID  # not asked: malformed here already


async def test_a_failing_read_during_an_upload_is_raised_as_itself(
    client: PlatformClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(_file: object) -> AsyncIterator[bytes]:
        yield b"first chunk"
        raise OSError("the disk went away")

    monkeypatch.setattr(client_module, "_file_chunks", failing)
    payload_id = await client.create_payload({"k": "v"})
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(OSError, match="the disk went away"):
        await client.upload(payload_id, "f", tmp_path / "f")
    assert (await client.payload_details(payload_id)).files == ()  # nothing half written
    with pytest.raises(FileNotFoundError):  # before any call: the file is opened first
        await client.upload(payload_id, "g", tmp_path / "missing")


async def test_platform_calls(client: PlatformClient) -> None:
    assert str(await client.version()) == "0.7.4-claret"
    assert await client.health() == "SERVING"
    assert await client.utilization() == []  # the server runs without GPUs


async def test_an_unreachable_platform_is_one_line_naming_it() -> None:
    async with PlatformClient("127.0.0.1:1", timeout=3) as unreachable:
        with pytest.raises(ClientError) as error:
            await unreachable.version()
    assert str(error.value).startswith("cannot reach the platform at 127.0.0.1:1 (") and error.value.code is None
