"""Clients that vanish mid-stream: no partial file is ever visible, nothing is left behind, nothing leaks."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from protos.nvidia.clara.platform import common_pb2, payloads_pb2_grpc
from protos.nvidia.clara.platform import payloads_pb2 as pb
from tests.helpers import serve_process

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)

CHUNK = b"x" * (64 * 1024)
ROUNDS = 100
KILLED_PROCESSES = 10

UPLOADER = textwrap.dedent("""
    import sys, grpc
    from protos.nvidia.clara.platform import common_pb2, payloads_pb2 as pb, payloads_pb2_grpc
    address, payload_id = sys.argv[1:3]
    def requests():
        for _ in range(100_000):
            yield pb.PayloadsUploadRequest(payload_id=common_pb2.Identifier(value=payload_id),
                                           details=pb.PayloadFileDetails(name="killed.bin"), data=b"x" * 65536)
    print("uploading", flush=True)
    payloads_pb2_grpc.PayloadsStub(grpc.insecure_channel(address)).Upload(requests())
""")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def leftovers(payload_dir: Path) -> list[Path]:
    """Files of the payload that are not complete uploads: temporaries or partial names."""
    return [p for p in payload_dir.rglob("*") if p.is_file() and p.name != "whole.bin"]


async def interrupted_upload(address: str, payload_id: str, chunks: int) -> None:
    channel = grpc.aio.insecure_channel(address)
    stub = payloads_pb2_grpc.PayloadsStub(channel)

    async def requests() -> AsyncIterator[pb.PayloadsUploadRequest]:
        for _ in range(chunks):
            yield pb.PayloadsUploadRequest(
                payload_id=common_pb2.Identifier(value=payload_id),
                details=pb.PayloadFileDetails(name="partial.bin"),
                data=CHUNK,
            )
        await asyncio.sleep(60)  # the client never finishes: it vanishes instead

    call = stub.Upload(requests())
    await asyncio.sleep(0.02)
    await channel.close(grace=None)  # like a killed client: the connection drops mid-stream
    call.cancel()


async def interrupted_download(address: str, payload_id: str) -> None:
    channel = grpc.aio.insecure_channel(address)
    stub = payloads_pb2_grpc.PayloadsStub(channel)
    call = stub.Download(
        pb.PayloadsDownloadRequest(payload_id=common_pb2.Identifier(value=payload_id), name="whole.bin")
    )
    async for _ in call:
        break  # one chunk, then the client is gone
    await channel.close(grace=None)


async def test_vanishing_clients(tmp_path: Path) -> None:
    rng = random.Random(7)
    data = tmp_path / "data"
    with serve_process(data, "--runtime", "sandbox") as (address, server):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = payloads_pb2_grpc.PayloadsStub(channel)
            payload_id = (await stub.Create(pb.PayloadsCreateRequest())).payload_id.value

            async def whole() -> AsyncIterator[pb.PayloadsUploadRequest]:
                for _ in range(64):  # 4 MiB
                    yield pb.PayloadsUploadRequest(
                        payload_id=common_pb2.Identifier(value=payload_id),
                        details=pb.PayloadFileDetails(name="whole.bin"),
                        data=CHUNK,
                    )

            assert (await stub.Upload(whole())).header.code == 0
            payload_dir = data / "payloads" / payload_id
            baseline_fds = open_fds(server.pid)
            for _ in range(ROUNDS):
                await asyncio.gather(
                    interrupted_upload(address, payload_id, rng.randint(1, 40)),
                    interrupted_download(address, payload_id),
                )
                listing = [
                    r.file.name
                    async for r in stub.Details(
                        pb.PayloadsDetailsRequest(payload_id=common_pb2.Identifier(value=payload_id))
                    )
                ]
                assert listing == ["/whole.bin"]  # never a partial file
            for _ in range(KILLED_PROCESSES):
                client = subprocess.Popen(
                    [sys.executable, "-c", UPLOADER, address, payload_id], stdout=subprocess.PIPE, text=True
                )
                assert client.stdout is not None and client.stdout.readline().strip() == "uploading"
                await asyncio.sleep(rng.uniform(0.05, 0.3))
                client.send_signal(signal.SIGKILL)
                client.wait()
            for _ in range(50):  # the server notices the last dropped connections
                if not leftovers(payload_dir) and open_fds(server.pid) <= baseline_fds:
                    break
                await asyncio.sleep(0.1)
            assert leftovers(payload_dir) == []
            assert open_fds(server.pid) <= baseline_fds
            assert (payload_dir / "whole.bin").stat().st_size == 64 * len(CHUNK)
    with serve_process(data, "--runtime", "sandbox"):  # and after the next start: still nothing
        assert leftovers(payload_dir) == []
