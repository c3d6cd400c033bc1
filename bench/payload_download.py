"""Download throughput through the Payloads service vs a bare grpc.aio server stream of the same file (target >= 0.95).

A 256 MiB file is uploaded once into a reusable payload; then rounds alternate between downloading it from
Claret (Payloads.Download: name resolution, 1 MiB chunks) and from the bare server (bench/bare_server.py,
another process), which opens the same file in Claret's payload tree and streams it in 1 MiB chunks. Both
read from the page cache. The figure is the median round of each; the server's CPU time per GiB is shown too.

    .venv/bin/python bench/payload_download.py [--mib 256] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import time

from harness import (
    Result,
    bare_server,
    claret_server,
    cpu_seconds,
    median,
    report,
    request_header,
    run,
    scratch,
    show_rounds,
)

from protos.nvidia.clara.platform import common_pb2, payloads_pb2, payloads_pb2_grpc

NAME = "payload_download"
TARGET = 0.95
UPLOAD_CHUNK = 1024 * 1024


async def download(stub: payloads_pb2_grpc.PayloadsStub, payload_id: str, name: str, expected: int) -> float:
    request = payloads_pb2.PayloadsDownloadRequest(
        header=request_header(), payload_id=common_pb2.Identifier(value=payload_id), name=name
    )
    size = 0
    begin = time.perf_counter()
    async for reply in stub.Download(request):
        size += len(reply.data)
    elapsed = time.perf_counter() - begin
    assert size == expected, (size, expected)
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json-out")
    options = parser.parse_args()
    size = options.mib * 1024 * 1024
    with scratch("download") as work, claret_server(work, profile_name=NAME) as claret:
        async with claret.channel() as claret_channel:
            claret_stub = payloads_pb2_grpc.PayloadsStub(claret_channel)
            created = await claret_stub.Create(payloads_pb2.PayloadsCreateRequest(header=request_header()))
            assert created.header.code == 0, created.header.messages
            payload_id = created.payload_id.value
            block = os.urandom(UPLOAD_CHUNK)
            identifier = common_pb2.Identifier(value=payload_id)

            def requests():  # type: ignore[no-untyped-def]
                for _ in range(options.mib):
                    yield payloads_pb2.PayloadsUploadRequest(
                        payload_id=identifier, details=payloads_pb2.PayloadFileDetails(name="big.bin"), data=block
                    )

            uploaded = await claret_stub.Upload(requests())
            assert uploaded.header.code == 0 and uploaded.details.size == size, uploaded
            payload_dir = work / "data" / "payloads" / payload_id
            assert (payload_dir / "big.bin").stat().st_size == size
            with bare_server(payload_dir, profile_name=NAME) as bare:
                async with bare.channel() as bare_channel:
                    bare_stub = payloads_pb2_grpc.PayloadsStub(bare_channel)
                    subjects = {"claret": (claret_stub, claret.pid), "bare": (bare_stub, bare.pid)}
                    for stub, _ in subjects.values():  # warm up
                        await download(stub, payload_id, "big.bin", size)
                    rates: dict[str, list[float]] = {"claret": [], "bare": []}
                    cpu: dict[str, list[float]] = {"claret": [], "bare": []}
                    for round_ in range(options.rounds):
                        order = ["bare", "claret"] if round_ % 2 == 0 else ["claret", "bare"]
                        for who in order:
                            stub, pid = subjects[who]
                            before = cpu_seconds(pid)
                            seconds = await download(stub, payload_id, "big.bin", size)
                            cpu[who].append((cpu_seconds(pid) - before) / options.mib * 1024)
                            rates[who].append(options.mib / seconds)
    show_rounds(rates, "MiB/s", cpu, "s/GiB")
    claret_rate, bare_rate = median(rates["claret"]), median(rates["bare"])
    ratio = claret_rate / bare_rate
    cpu_ratio = median(cpu["bare"]) / median(cpu["claret"])
    report(
        Result(
            NAME,
            claret_rate,
            bare_rate,
            "MiB/s",
            ratio,
            f">= {TARGET}",
            ratio >= TARGET,
            f"{options.mib} MiB file, 1 MiB chunks, median of {options.rounds}; "
            f"server CPU per GiB bare:claret {cpu_ratio:.2f}",
        )
    )


if __name__ == "__main__":
    run(main)
