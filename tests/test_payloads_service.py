"""The Payloads service over a real server: streaming, names, atomicity, guards, the official client."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import grpc
import pytest

from protos.nvidia.clara.platform import common_pb2, payloads_pb2_grpc
from protos.nvidia.clara.platform import payloads_pb2 as pb
from shared.errors import ErrorCode
from tests.helpers import RunningServer, make_settings, run_official, start_in_process

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)

KIB = 1024
MIB = 1024 * KIB


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


async def upload(
    stub: payloads_pb2_grpc.PayloadsStub, payload_id: str, name: str, chunks: Iterable[bytes]
) -> pb.PayloadsUploadResponse:
    async def requests() -> AsyncIterator[pb.PayloadsUploadRequest]:
        for chunk in chunks:  # like the official client: details and id on every chunk
            yield pb.PayloadsUploadRequest(
                payload_id=common_pb2.Identifier(value=payload_id),
                details=pb.PayloadFileDetails(name=name, size=len(chunk)),
                data=chunk,
            )

    return await stub.Upload(requests())


async def download(
    stub: payloads_pb2_grpc.PayloadsStub, payload_id: str, name: str
) -> tuple[list[pb.PayloadsDownloadResponse], bytes]:
    request = pb.PayloadsDownloadRequest(payload_id=common_pb2.Identifier(value=payload_id), name=name)
    replies = [reply async for reply in stub.Download(request)]
    return replies, b"".join(reply.data for reply in replies)


async def names(stub: payloads_pb2_grpc.PayloadsStub, payload_id: str) -> list[tuple[str, int]]:
    request = pb.PayloadsDetailsRequest(payload_id=common_pb2.Identifier(value=payload_id))
    return [(r.file.name, r.file.size) async for r in stub.Details(request)]


@pytest.fixture
async def stub(platform: RunningServer) -> AsyncIterator[payloads_pb2_grpc.PayloadsStub]:
    async with platform.channel() as channel:
        yield payloads_pb2_grpc.PayloadsStub(channel)


@pytest.fixture
async def payload_id(stub: payloads_pb2_grpc.PayloadsStub) -> str:
    created = await stub.Create(pb.PayloadsCreateRequest(metadata={"kind": "test"}))
    assert created.header.code == 0 and created.type == pb.PAYLOAD_TYPE_REUSABLE
    return created.payload_id.value


@pytest.mark.parametrize("chunk_size", [64 * KIB, 1 * MIB, 3 * MIB + 7])
async def test_multi_megabyte_round_trip(
    stub: payloads_pb2_grpc.PayloadsStub, payload_id: str, chunk_size: int
) -> None:
    data = os.urandom(5 * MIB + 123)
    reply = await upload(stub, payload_id, "a/b/c.dcm", chunked(data, chunk_size))
    assert reply.header.code == 0, reply.header.messages
    assert (reply.details.name, reply.details.size) == ("a/b/c.dcm", len(data))
    replies, received = await download(stub, payload_id, "/a/b/c.dcm")
    assert received == data
    assert replies[0].details.size == len(data) and replies[0].details.name == "/a/b/c.dcm"
    assert max(len(r.data) for r in replies) <= MIB
    assert await names(stub, payload_id) == [("/a/b/c.dcm", len(data))]


async def test_empty_file_downloads_as_one_message(stub: payloads_pb2_grpc.PayloadsStub, payload_id: str) -> None:
    assert (await upload(stub, payload_id, "empty", [b""])).header.code == 0
    replies, data = await download(stub, payload_id, "./empty")
    assert len(replies) == 1 and data == b"" and replies[0].details.name == "/empty"


@pytest.mark.parametrize("name", ["..", "a/../../b", "/../x", "a\x00b", "", "a//b", "."])
async def test_refused_names_write_nothing(stub: payloads_pb2_grpc.PayloadsStub, payload_id: str, name: str) -> None:
    reply = await upload(stub, payload_id, name, [b"data"])
    assert reply.header.code == ErrorCode.INVALID_FILE_NAME, (name, reply.header)
    assert reply.header.messages
    assert await names(stub, payload_id) == []


async def test_cancelled_upload_leaves_no_file(
    stub: payloads_pb2_grpc.PayloadsStub, payload_id: str, platform: RunningServer
) -> None:
    sent = asyncio.Event()

    async def requests() -> AsyncIterator[pb.PayloadsUploadRequest]:
        for _ in range(4):
            yield pb.PayloadsUploadRequest(
                payload_id=common_pb2.Identifier(value=payload_id),
                details=pb.PayloadFileDetails(name="half.bin"),
                data=b"x" * MIB,
            )
        sent.set()
        await asyncio.sleep(30)  # never finishes: the client gives up half way

    call = stub.Upload(requests())
    await sent.wait()
    await asyncio.sleep(0.2)
    call.cancel()
    await asyncio.sleep(0.3)
    assert await names(stub, payload_id) == []
    leftovers = [p for p in (platform.settings.payload_path / payload_id).rglob("*") if p.is_file()]
    assert leftovers == []


async def test_concurrent_uploads_of_one_name_do_not_interleave(
    stub: payloads_pb2_grpc.PayloadsStub, payload_id: str
) -> None:
    first, second = b"A" * (3 * MIB), b"B" * (3 * MIB)
    replies = await asyncio.gather(
        upload(stub, payload_id, "same.bin", chunked(first, 64 * KIB)),
        upload(stub, payload_id, "same.bin", chunked(second, 64 * KIB)),
    )
    assert [r.header.code for r in replies] == [0, 0]
    _, data = await download(stub, payload_id, "same.bin")
    assert data in (first, second)


async def test_case_rules_on_download(stub: payloads_pb2_grpc.PayloadsStub, payload_id: str) -> None:
    await upload(stub, payload_id, "Scan.raw", [b"upper"])
    _, data = await download(stub, payload_id, "scan.RAW")
    assert data == b"upper"
    await upload(stub, payload_id, "scan.raw", [b"lower"])
    assert (await download(stub, payload_id, "scan.raw"))[1] == b"lower"
    replies, _ = await download(stub, payload_id, "SCAN.RAW")
    assert replies[0].header.code == ErrorCode.AMBIGUOUS_NAME
    missing, _ = await download(stub, payload_id, "nothing.raw")
    assert missing[0].header.code == ErrorCode.NO_SUCH_FILE and "nothing.raw" in missing[0].header.messages[0]


async def test_unknown_and_malformed_payload_ids(stub: payloads_pb2_grpc.PayloadsStub) -> None:
    assert (await upload(stub, "f" * 32, "x", [b"1"])).header.code == ErrorCode.NO_SUCH_PAYLOAD
    assert (await upload(stub, "nope", "x", [b"1"])).header.code == ErrorCode.INVALID_PAYLOAD_ID
    deleted = await stub.Delete(pb.PayloadsDeleteRequest(payload_id=common_pb2.Identifier(value="f" * 32)))
    assert deleted.header.code == ErrorCode.NO_SUCH_PAYLOAD


async def test_storage_guard_refuses_uploads(tmp_path: Path) -> None:
    server, resources = await start_in_process(make_settings(tmp_path, max_storage_usage=1e-9))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            stub = payloads_pb2_grpc.PayloadsStub(ch)
            created = await stub.Create(pb.PayloadsCreateRequest())
            reply = await upload(stub, created.payload_id.value, "big.bin", [b"x" * KIB])
            assert reply.header.code == ErrorCode.STORAGE_FULL
            assert "%" in reply.header.messages[0]
            assert await names(stub, created.payload_id.value) == []
    finally:
        await server.stop(grace=1)
        await resources.close()


def test_official_payloads_client(served: RunningServer, official_python: Path, tmp_path: Path) -> None:
    source = tmp_path / "image.raw"
    data = os.urandom(3 * MIB + 5)
    source.write_bytes(data)
    result = run_official(
        official_python, "payloads_flow.py", served.address, str(source), str(tmp_path / "downloaded.raw")
    )
    assert isinstance(result, dict)
    assert result.pop("missing_error").startswith("no payload with id")
    assert result == {
        "type": 2,
        "uploaded": ["scans/image.raw", len(data)],
        "files": [["/notes.txt", len(data)], ["/scans/image.raw", len(data)]],
        "metadata": {"study": "s1"},
        "downloaded_sha256": hashlib.sha256(data).hexdigest(),
        "added": {"study": "s1", "site": "a"},
        "removed": {"site": "a"},
        "after_remove": ["/scans/image.raw"],
    }


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def test_server_memory_stays_flat_for_large_files(served: RunningServer) -> None:
    """Peak RSS after a 32 MiB round trip and after a 768 MiB one differ by far less than the file."""
    assert served.pid is not None
    chunk = os.urandom(64 * KIB)
    async with served.channel() as channel:
        stub = payloads_pb2_grpc.PayloadsStub(channel)
        created = await stub.Create(pb.PayloadsCreateRequest())
        peaks = []
        for size_mib in (32, 768):
            reply = await upload(
                stub, created.payload_id.value, f"{size_mib}.bin", (chunk for _ in range(size_mib * 16))
            )
            assert reply.details.size == size_mib * MIB
            request = pb.PayloadsDownloadRequest(payload_id=created.payload_id, name=f"{size_mib}.bin")
            received = 0
            async for message in stub.Download(request):
                received += len(message.data)
            assert received == size_mib * MIB
            peaks.append(peak_rss_mib(served.pid))
    assert peaks[1] - peaks[0] < 64, f"peak RSS grew from {peaks[0]:.0f} to {peaks[1]:.0f} MiB"


async def test_upload_finishing_after_its_job_started_is_refused(platform: RunningServer) -> None:
    from tests.jobs_flow import DATA, Platform

    async with platform.channel() as channel:
        clara = Platform(channel, platform.settings.database_target)
        job = await clara.job(await clara.pipeline((DATA / "two_operators.yaml").read_text()))
        halfway = asyncio.Event()
        proceed = asyncio.Event()

        async def requests() -> AsyncIterator[pb.PayloadsUploadRequest]:
            yield pb.PayloadsUploadRequest(
                payload_id=job.payload_id, details=pb.PayloadFileDetails(name="late.txt"), data=b"first half "
            )
            halfway.set()
            await proceed.wait()
            yield pb.PayloadsUploadRequest(
                payload_id=job.payload_id, details=pb.PayloadFileDetails(name="late.txt"), data=b"second half"
            )

        upload = asyncio.ensure_future(clara.payloads.Upload(requests()))
        await halfway.wait()
        assert (await clara.start(job.job_id.value)).header.code == 0
        proceed.set()
        reply = await upload
        assert reply.header.code == ErrorCode.PAYLOAD_READ_ONLY
        assert ("/input/late.txt", 22) not in await names(clara.payloads, job.payload_id.value)
