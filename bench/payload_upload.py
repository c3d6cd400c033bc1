"""Upload throughput through the Payloads service vs a bare grpc.aio client stream into a file (target >= 0.95).

Both servers get the same client stream: 256 MiB in 64 KiB chunks, each message carrying the request
header, payload_id, file details and data, exactly as the official client (nvidia-clara-client 0.8.1.7,
``PayloadsClient.upload_request_iterator``) builds them. Claret stores it in a reusable payload (temporary
file, then rename); the bare server (bench/bare_server.py, another process) writes the chunks into a file.
Every upload writes a new file, deleted by the benchmark after the round (outside the timing). Rounds
alternate between the two; the figure is the median round of each. Each round also measures the server's
CPU time per GiB, which the machine's noise disturbs less than wall-clock time.

    .venv/bin/python bench/payload_upload.py [--mib 256] [--rounds 7]
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

NAME = "payload_upload"
CHUNK = 64 * 1024
TARGET = 0.95


async def upload(stub: payloads_pb2_grpc.PayloadsStub, payload_id: str, mib: int, chunk: bytes, name: str) -> float:
    """Seconds to upload ``mib`` MiB as ``name``; checks the size the server reports."""
    count = mib * 1024 * 1024 // CHUNK
    header = request_header()
    identifier = common_pb2.Identifier(value=payload_id)

    def requests():  # type: ignore[no-untyped-def]
        for _ in range(count):
            yield payloads_pb2.PayloadsUploadRequest(
                header=header,
                payload_id=identifier,
                details=payloads_pb2.PayloadFileDetails(mode=0, name=name, size=len(chunk)),
                data=chunk,
            )

    begin = time.perf_counter()
    reply = await stub.Upload(requests())
    elapsed = time.perf_counter() - begin
    assert reply.header.code == 0, reply.header.messages
    assert reply.details.size == count * CHUNK, (reply.details.size, count * CHUNK)
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json-out")
    options = parser.parse_args()
    chunk = os.urandom(CHUNK)
    with (
        scratch("upload") as work,
        claret_server(work, profile_name=NAME) as claret,
        bare_server(work, profile_name=NAME) as bare,
    ):
        async with claret.channel() as claret_channel, bare.channel() as bare_channel:
            claret_stub = payloads_pb2_grpc.PayloadsStub(claret_channel)
            bare_stub = payloads_pb2_grpc.PayloadsStub(bare_channel)
            created = await claret_stub.Create(payloads_pb2.PayloadsCreateRequest(header=request_header()))
            assert created.header.code == 0, created.header.messages
            payload_id = created.payload_id.value
            subjects = {"claret": (claret_stub, claret.pid), "bare": (bare_stub, bare.pid)}
            payload_dir = work / "data" / "payloads" / payload_id

            def clean() -> None:
                """Each upload writes a new file (as real uploads do); delete them here, outside the timing."""
                for path in [*payload_dir.glob("big-*.bin"), *work.glob("upload-*.bin")]:
                    path.unlink()

            for stub, _ in subjects.values():  # warm up connections and code paths
                await upload(stub, payload_id, 16, chunk, "big-warm.bin")
            clean()
            rates: dict[str, list[float]] = {"claret": [], "bare": []}
            cpu: dict[str, list[float]] = {"claret": [], "bare": []}
            for round_ in range(options.rounds):
                order = ["bare", "claret"] if round_ % 2 == 0 else ["claret", "bare"]
                for who in order:
                    stub, pid = subjects[who]
                    before = cpu_seconds(pid)
                    seconds = await upload(stub, payload_id, options.mib, chunk, f"big-{round_}.bin")
                    cpu[who].append((cpu_seconds(pid) - before) / options.mib * 1024)
                    rates[who].append(options.mib / seconds)
                    clean()
    show_rounds(rates, "MiB/s", cpu, "s/GiB")
    claret, bare = median(rates["claret"]), median(rates["bare"])
    ratio = claret / bare
    cpu_ratio = median(cpu["bare"]) / median(cpu["claret"])
    report(
        Result(
            NAME,
            claret,
            bare,
            "MiB/s",
            ratio,
            f">= {TARGET}",
            ratio >= TARGET,
            f"{options.mib} MiB in 64 KiB chunks, median of {options.rounds}; "
            f"server CPU per GiB bare:claret {cpu_ratio:.2f}",
        )
    )


if __name__ == "__main__":
    run(main)
