"""Hostile input gets a clear refusal and the server keeps serving."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from protos.nvidia.clara.platform import clara_pb2, clara_pb2_grpc, common_pb2, jobs_pb2
from protos.nvidia.clara.platform import payloads_pb2 as ppb
from protos.nvidia.clara.platform import pipelines_pb2 as plpb
from shared.errors import ErrorCode
from shared.server import MAX_MESSAGE_BYTES
from tests.helpers import RunningServer
from tests.jobs_flow import Platform

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)


@pytest.fixture
async def clara(platform: RunningServer) -> AsyncIterator[Platform]:
    async with platform.channel() as channel:
        yield Platform(channel, platform.settings.database_target)


async def still_serving(clara: Platform) -> None:
    reply = await clara_pb2_grpc.ClaraStub(clara.channel).Version(clara_pb2.ClaraVersionRequest())
    assert reply.header.code == 0


async def test_malformed_protobuf_bytes(clara: Platform) -> None:
    raw = clara.channel.unary_unary(
        "/nvidia.clara.platform.Jobs/Status", request_serializer=None, response_deserializer=None
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await raw(b"\xff\xff\xff\xff\x0f\x12garbage")
    # Not a valid message, so no Clara header can answer it: grpc.aio's own error names the parse failure.
    assert refused.value.code() == grpc.StatusCode.UNKNOWN
    assert "Error parsing message with type 'nvidia.clara.platform.JobsStatusRequest'" in (
        refused.value.details() or ""
    )
    await still_serving(clara)


async def test_oversized_message(clara: Platform) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await clara.jobs.Status(
            jobs_pb2.JobsStatusRequest(job_id=common_pb2.Identifier(value="x" * (MAX_MESSAGE_BYTES + 1)))
        )
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await still_serving(clara)


async def test_huge_metadata_is_refused_whole(clara: Platform) -> None:
    created = await clara.payloads.Create(ppb.PayloadsCreateRequest(metadata={"k": "v" * 10_000}))
    assert created.header.code == ErrorCode.INVALID_METADATA and "256 bytes" in created.header.messages[0]
    many = {f"key-{i}": "v" * 250 for i in range(20_000)}  # about 5 MB in one message
    created = await clara.payloads.Create(ppb.PayloadsCreateRequest(metadata=many))
    assert created.header.code == ErrorCode.INVALID_METADATA and "over" in created.header.messages[0]
    await still_serving(clara)


BILLION_LAUGHS = "\n".join(
    ["api-version: 0.4.0", "name: lol", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(8)]
    + ["operators: []"]
)


@pytest.mark.parametrize(
    ("files", "code"),
    [
        ([("p.yaml", BILLION_LAUGHS)], ErrorCode.PIPELINE_LOAD),
        (
            [("p.yaml", "api-version: 0.4.0\nname: x\noperators:\n- import: {path: ../../etc/passwd}\n")],
            ErrorCode.PIPELINE_DEFINITION,
        ),
        (
            [("p.yaml", "api-version: 0.4.0\nname: x\noperators:\n- import: {path: /etc/passwd}\n")],
            ErrorCode.PIPELINE_DEFINITION,
        ),
        (
            [
                ("p.yaml", "api-version: 0.4.0\nname: x\noperators:\n- import: {path: a.yaml}\n"),
                ("a.yaml", "name: a\nimport: {path: a.yaml}\n"),
            ],
            None,
        ),
        ([("p.yaml", "[" * 10_000)], ErrorCode.PIPELINE_LOAD),
        ([("p.yaml", "api-version: 0.4.0\nname: ../../x\noperators: []\n")], ErrorCode.PIPELINE_DEFINITION),
    ],
)
async def test_hostile_pipeline_definitions(clara: Platform, files: list[tuple[str, str]], code: int | None) -> None:
    async def requests() -> AsyncIterator[plpb.PipelinesCreateRequest]:
        for path, content in files:
            yield plpb.PipelinesCreateRequest(definition=plpb.PipelineDefinitionFile(path=path, content=content))

    reply = await clara.pipelines.Create(requests())
    assert reply.header.code < 0 and reply.header.messages
    if code is not None:
        assert reply.header.code == code, reply.header
    await still_serving(clara)


@pytest.mark.parametrize("name", ["../escape", "/../../etc/passwd", "a/../../b", "input/../../../x", "\x00"])
async def test_path_traversal_in_download_and_remove(clara: Platform, name: str) -> None:
    created = await clara.payloads.Create(ppb.PayloadsCreateRequest())
    request = ppb.PayloadsDownloadRequest(payload_id=created.payload_id, name=name)
    (reply,) = [r async for r in clara.payloads.Download(request)]
    assert reply.header.code == ErrorCode.INVALID_FILE_NAME
    removed = await clara.payloads.Remove(ppb.PayloadsRemoveRequest(payload_id=created.payload_id, name=name))
    assert removed.header.code == ErrorCode.INVALID_FILE_NAME


@pytest.mark.parametrize("bad_id", ["../../etc", "' OR 1=1 --", "x" * 1000, "0" * 31, "g" * 32])
async def test_ids_of_the_wrong_form(clara: Platform, bad_id: str) -> None:
    ident = common_pb2.Identifier(value=bad_id)
    status = await clara.jobs.Status(jobs_pb2.JobsStatusRequest(job_id=ident))
    assert status.header.code == ErrorCode.INVALID_JOB_ID
    (details,) = [r async for r in clara.payloads.Details(ppb.PayloadsDetailsRequest(payload_id=ident))]
    assert details.header.code == ErrorCode.INVALID_PAYLOAD_ID
    removed = await clara.pipelines.Remove(plpb.PipelinesRemoveRequest(pipeline_id=ident))
    assert removed.header.code == ErrorCode.INVALID_PIPELINE_ID
    await still_serving(clara)
