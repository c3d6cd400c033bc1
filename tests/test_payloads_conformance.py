"""Payloads as docs/behaviour.md says (issue #17) over real servers on TCP: Upload reassembles each file from
the chunks that name it; Download and Remove take a job's file by the name as uploaded and as listed; a job's
payload stays until its job stopped; a full payload volume is STORAGE_FULL and leaves nothing behind."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protos.nvidia.clara.platform import common_pb2, jobs_pb2
from protos.nvidia.clara.platform import payloads_pb2 as pb
from shared.errors import ErrorCode
from tests.helpers import RunningServer, make_settings, run_official, start_in_process
from tests.jobs_flow import DATA, Platform
from tests.test_payloads_service import KIB, MIB, chunked, download, names, upload
from tests.volumes import fill, small_volume

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)

PIPELINE = DATA / "two_operators.yaml"


@pytest.fixture
async def clara(platform: RunningServer) -> AsyncIterator[Platform]:
    async with platform.channel() as channel:
        yield Platform(channel, platform.settings.database_target)


async def reusable(clara: Platform) -> str:
    created = await clara.payloads.Create(pb.PayloadsCreateRequest())
    assert created.header.code == 0, created.header.messages
    return created.payload_id.value


def request(payload_id: str, name: str, data: bytes) -> pb.PayloadsUploadRequest:
    """One chunk; an empty ``name`` leaves ``details.name`` unset, like the CLI after a file's first chunk."""
    return pb.PayloadsUploadRequest(
        payload_id=common_pb2.Identifier(value=payload_id), details=pb.PayloadFileDetails(name=name), data=data
    )


async def send(clara: Platform, payload_id: str, chunks: list[tuple[str, bytes]]) -> pb.PayloadsUploadResponse:
    async def requests() -> AsyncIterator[pb.PayloadsUploadRequest]:
        for name, data in chunks:
            yield request(payload_id, name, data)

    return await clara.payloads.Upload(requests())


async def contents(clara: Platform, payload_id: str, name: str) -> bytes:
    replies, data = await download(clara.payloads, payload_id, name)
    assert replies[0].header.code == 0, (name, replies[0].header.messages)
    return data


def temporaries(root: Path) -> list[Path]:
    return list(root.rglob(".claret-upload-*"))


# -- Upload reassembles files by name ------------------------------------------------------------


async def test_interleaved_chunks_reassemble_each_file(clara: Platform) -> None:
    payload_id = await reusable(clara)
    reply = await send(clara, payload_id, [("g.txt", b"11"), ("h.txt", b"xx"), ("g.txt", b"22")])
    assert reply.header.code == 0, reply.header.messages
    assert (reply.details.name, reply.details.size) == ("g.txt", 4)  # the file of the last chunk
    assert await names(clara.payloads, payload_id) == [("/g.txt", 4), ("/h.txt", 2)]
    assert await contents(clara, payload_id, "g.txt") == b"1122"
    assert await contents(clara, payload_id, "h.txt") == b"xx"


async def test_unnamed_chunks_continue_the_file_before_them(clara: Platform) -> None:
    payload_id = await reusable(clara)
    chunks = [("g.txt", b"1"), ("", b"2"), ("h.txt", b"x"), ("", b"y"), ("./g.txt", b"3"), ("", b"4")]
    reply = await send(clara, payload_id, chunks)
    assert (reply.header.code, reply.details.name, reply.details.size) == (0, "./g.txt", 4)
    assert await contents(clara, payload_id, "g.txt") == b"1234"
    assert await contents(clara, payload_id, "h.txt") == b"xy"


async def test_many_interleaved_megabytes_keep_each_files_bytes(clara: Platform) -> None:
    """Chunks of three multi-MiB files in a random order, so each file's buffer is flushed and reopened."""
    rng = random.Random(17)
    files = {name: rng.randbytes(2 * MIB + rng.randrange(64 * KIB)) for name in ("a/1.bin", "a/2.bin", "b.bin")}
    queues = {name: chunked(data, 64 * KIB) for name, data in files.items()}
    chunks = []
    while queues:
        name = rng.choice(sorted(queues))
        chunks.append((name, queues[name].pop(0)))
        if not queues[name]:
            del queues[name]
    payload_id = await reusable(clara)
    assert (await send(clara, payload_id, chunks)).header.code == 0
    assert await names(clara.payloads, payload_id) == [(f"/{name}", len(data)) for name, data in sorted(files.items())]
    for name, data in files.items():
        assert await contents(clara, payload_id, name) == data


async def test_cancelled_interleaved_stream_leaves_neither_file(clara: Platform, platform: RunningServer) -> None:
    payload_id = await reusable(clara)
    sent = asyncio.Event()

    async def requests() -> AsyncIterator[pb.PayloadsUploadRequest]:
        for name in ("g.txt", "h.txt", "g.txt", "h.txt"):
            yield request(payload_id, name, b"x" * (256 * KIB))
        sent.set()
        await asyncio.sleep(30)  # never finishes: the client gives up half way

    call = clara.payloads.Upload(requests())
    await sent.wait()
    await asyncio.sleep(0.2)
    call.cancel()
    await asyncio.sleep(0.3)
    assert await names(clara.payloads, payload_id) == []
    assert [p for p in (platform.settings.payload_path / payload_id).rglob("*") if p.is_file()] == []


# -- a job's files by the name as uploaded and as listed -----------------------------------------


async def test_job_file_by_name_as_uploaded_and_as_listed(clara: Platform, platform: RunningServer) -> None:
    job = await clara.job(await clara.pipeline(PIPELINE.read_text()))
    payload_id = job.payload_id.value
    await clara.upload(payload_id, "a.txt", b"input data")
    output = platform.settings.payload_path / payload_id / "operators" / "x" / "out.txt"
    output.parent.mkdir(parents=True)
    output.write_bytes(b"output data")  # as an operator leaves it

    assert await names(clara.payloads, payload_id) == [("/input/a.txt", 10), ("/operators/x/out.txt", 11)]
    for name in ("a.txt", "/a.txt", "/input/a.txt", "./input/a.txt", "input/a.txt", "A.TXT"):
        replies, data = await download(clara.payloads, payload_id, name)
        assert (replies[0].header.code, replies[0].details.name, data) == (0, "/input/a.txt", b"input data"), name
    assert await contents(clara, payload_id, "/operators/x/out.txt") == b"output data"

    removed = await clara.payloads.Remove(pb.PayloadsRemoveRequest(payload_id=job.payload_id, name="a.txt"))
    assert removed.header.code == 0, removed.header.messages
    assert await names(clara.payloads, payload_id) == [("/operators/x/out.txt", 11)]


async def test_job_file_lookup_keeps_root_first_and_the_case_rules(clara: Platform, platform: RunningServer) -> None:
    job = await clara.job(await clara.pipeline(PIPELINE.read_text()))
    payload_id = job.payload_id.value
    for name, data in (("Scan.raw", b"upper"), ("scan.raw", b"lower"), ("operators/y.txt", b"uploaded")):
        await clara.upload(payload_id, name, data)
    output = platform.settings.payload_path / payload_id / "operators" / "y.txt"
    output.parent.mkdir()
    output.write_bytes(b"output")  # an output of the same name at the root

    assert await contents(clara, payload_id, "scan.raw") == b"lower"  # the exact spelling under input/
    assert await contents(clara, payload_id, "operators/y.txt") == b"output"  # the root comes first
    assert await contents(clara, payload_id, "input/operators/y.txt") == b"uploaded"
    ambiguous, _ = await download(clara.payloads, payload_id, "SCAN.RAW")
    assert ambiguous[0].header.code == ErrorCode.AMBIGUOUS_NAME
    missing, _ = await download(clara.payloads, payload_id, "nothing.raw")
    assert missing[0].header.code == ErrorCode.NO_SUCH_FILE and "nothing.raw" in missing[0].header.messages[0]
    gone = await clara.payloads.Remove(pb.PayloadsRemoveRequest(payload_id=job.payload_id, name="SCAN.RAW"))
    assert gone.header.code == ErrorCode.AMBIGUOUS_NAME
    assert len(await names(clara.payloads, payload_id)) == 4


def test_official_client_job_payload_names_and_delete(
    served: RunningServer, official_python: Path, tmp_path: Path
) -> None:
    source = tmp_path / "a.txt"
    data = os.urandom(200 * KIB + 3)
    source.write_bytes(data)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    result = run_official(
        official_python, "payloads_conformance.py", served.address, str(PIPELINE), str(source), str(downloads)
    )
    assert isinstance(result, dict)
    digest = hashlib.sha256(data).hexdigest()
    assert result["uploaded"] == ["a.txt", len(data)]
    assert result["files"] == [["/input/a.txt", len(data)]]
    assert result["source_sha256"] == digest
    assert result["downloads"] == {"a.txt": ["/input/a.txt", digest], "/input/a.txt": ["/input/a.txt", digest]}
    assert result["job_id"] in result["delete_before_start"]
    assert result["still_there"] == ["/input/a.txt"]
    assert result["delete_after_cancel"] is None
    assert result["details_after_delete"].startswith("no payload with id")


# -- a job's payload stays until its job stopped -------------------------------------------------


async def test_job_payload_cannot_be_deleted_until_its_job_stopped(clara: Platform) -> None:
    job = await clara.job(await clara.pipeline(PIPELINE.read_text()))
    payload_id = job.payload_id.value
    await clara.upload(payload_id, "a.txt", b"data")

    refused = await clara.payloads.Delete(pb.PayloadsDeleteRequest(payload_id=job.payload_id))
    assert refused.header.code == ErrorCode.PAYLOAD_READ_ONLY
    assert job.job_id.value in refused.header.messages[0]
    assert await names(clara.payloads, payload_id) == [("/input/a.txt", 4)]

    cancelled = await clara.jobs.Cancel(jobs_pb2.JobsCancelRequest(job_id=job.job_id))
    assert cancelled.header.code == 0, cancelled.header.messages
    await clara.wait_stopped(job.job_id.value)
    deleted = await clara.payloads.Delete(pb.PayloadsDeleteRequest(payload_id=job.payload_id))
    assert deleted.header.code == 0, deleted.header.messages
    details = [r async for r in clara.payloads.Details(pb.PayloadsDetailsRequest(payload_id=job.payload_id))]
    assert details[0].header.code == ErrorCode.NO_SUCH_PAYLOAD


# -- a full payload volume -----------------------------------------------------------------------


def assert_volume_full(header: common_pb2.ResponseHeader, volume: Path) -> None:
    assert header.code == ErrorCode.STORAGE_FULL, header
    assert list(header.messages) == [f"storage full: no space left on the payload volume ({volume})"]


async def test_full_payload_volume_is_storage_full_and_recovers(tmp_path: Path) -> None:
    with small_volume(tmp_path / "payloads", "4m") as volume:
        await check_full_payload_volume(tmp_path, volume)


async def check_full_payload_volume(tmp_path: Path, small_volume: Path) -> None:
    settings = make_settings(tmp_path, payload_dir=small_volume, max_storage_usage=1.0)  # no guard answers first
    server, resources = await start_in_process(settings)
    try:
        async with RunningServer(f"127.0.0.1:{server.port}", settings).channel() as channel:
            clara = Platform(channel, settings.database_target)
            source = await reusable(clara)
            await clara.upload(source, "scan.raw", b"s" * (512 * KIB))
            target = await reusable(clara)
            pipeline_id = await clara.pipeline(PIPELINE.read_text())
            filler = fill(small_volume)

            big, small = os.urandom(2 * MIB), b"tiny"  # failing at a write, and at the last flush
            for data in (big, small):
                reply = await upload(clara.payloads, target, "f.bin", chunked(data, 64 * KIB))
                assert_volume_full(reply.header, small_volume)
            create = jobs_pb2.JobsCreateRequest(
                pipeline_id=common_pb2.Identifier(value=pipeline_id),
                name="copies its input",
                input_payloads=[common_pb2.Identifier(value=source)],
            )
            assert_volume_full((await clara.jobs.Create(create)).header, small_volume)
            assert temporaries(small_volume) == []
            assert await names(clara.payloads, target) == []

            filler.unlink()  # space is back: the same calls work
            assert (await upload(clara.payloads, target, "f.bin", chunked(big, 64 * KIB))).header.code == 0
            assert await contents(clara, target, "f.bin") == big
            job = await clara.jobs.Create(create)
            assert job.header.code == 0, job.header.messages
            assert await names(clara.payloads, job.payload_id.value) == [("/input/scan.raw", 512 * KIB)]
            assert temporaries(small_volume) == []
    finally:
        await server.stop(grace=1)
        await resources.close()
