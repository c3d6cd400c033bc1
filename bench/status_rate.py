"""Jobs.Status calls per second at 64 in flight vs a bare grpc.aio unary echo server (target >= 0.8).

One finished one-operator job is asked for its status over and over by 64 concurrent callers on one channel.
The bare server (bench/bare_server.py, another process) answers each JobsStatusRequest with the very bytes
Claret answered for that job, so both servers parse the same requests and send the same replies; the
difference is the platform (database read, record to message). Rounds alternate; the median round of each counts.

    .venv/bin/python bench/status_rate.py [--concurrency 64] [--seconds 1.5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import grpc
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
from jobs_common import Clara, check_healthy, one_operator_pipeline

from protos.nvidia.clara.platform import common_pb2, jobs_pb2, jobs_pb2_grpc

NAME = "status_rate"
TARGET = 0.8


async def hammer(
    stub: jobs_pb2_grpc.JobsStub, request: jobs_pb2.JobsStatusRequest, concurrency: int, seconds: float, expected: bytes
) -> tuple[float, int]:
    """(calls per second, calls)."""
    calls = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal calls
        while time.perf_counter() < deadline:
            reply = await stub.Status(request)
            calls += 1
            if calls == 1:
                assert reply.SerializeToString() == expected

    begin = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return calls / (time.perf_counter() - begin), calls


async def status_target(channel: grpc.aio.Channel) -> tuple[jobs_pb2_grpc.JobsStub, jobs_pb2.JobsStatusRequest, bytes]:
    """A finished one-operator job on the server behind ``channel``, and the bare stub, the Status request for it
    and the reply it gets (the calls measured go through the bare stub: the server is under test, not the client)."""
    clara = Clara(channel)
    pipeline_id = await clara.pipeline(one_operator_pipeline(["true"]))
    job_id, _ = await clara.create(pipeline_id)
    await clara.start(job_id)
    job, _ = await clara.wait_stopped(job_id, 0.01)
    check_healthy(job)
    stub = jobs_pb2_grpc.JobsStub(channel)
    request = jobs_pb2.JobsStatusRequest(header=request_header(), job_id=common_pb2.Identifier(value=job_id))
    return stub, request, (await stub.Status(request)).SerializeToString()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json-out")
    options = parser.parse_args()
    rates: dict[str, list[float]] = {"claret": [], "bare": []}
    cpu: dict[str, list[float]] = {"claret": [], "bare": []}
    with scratch("status") as work, claret_server(work, profile_name=NAME) as claret:
        async with claret.channel() as claret_channel:
            stub, request, expected = await status_target(claret_channel)
            (work / "status-reply.bin").write_bytes(expected)
            with bare_server(work, status_reply=work / "status-reply.bin", profile_name=NAME) as bare:
                async with bare.channel() as bare_channel:
                    subjects = {
                        "claret": (stub, claret.pid),
                        "bare": (jobs_pb2_grpc.JobsStub(bare_channel), bare.pid),
                    }
                    for stub, _ in subjects.values():  # warm up
                        await hammer(stub, request, options.concurrency, 0.3, expected)
                    for round_ in range(options.rounds):
                        order = ["bare", "claret"] if round_ % 2 == 0 else ["claret", "bare"]
                        for who in order:
                            stub, pid = subjects[who]
                            before = cpu_seconds(pid)
                            rate, calls = await hammer(stub, request, options.concurrency, options.seconds, expected)
                            cpu[who].append((cpu_seconds(pid) - before) / calls * 1e6)
                            rates[who].append(rate)
    show_rounds(rates, "calls/s", cpu, "us/call")
    claret_rate, bare_rate = median(rates["claret"]), median(rates["bare"])
    ratio = claret_rate / bare_rate
    cpu_ratio = median(cpu["bare"]) / median(cpu["claret"])
    report(
        Result(
            NAME,
            claret_rate,
            bare_rate,
            "calls/s",
            ratio,
            f">= {TARGET}",
            ratio >= TARGET,
            f"{options.concurrency} in flight, {len(expected)}-byte reply, median of {options.rounds}; "
            f"server CPU per call bare:claret {cpu_ratio:.2f}",
        )
    )


if __name__ == "__main__":
    run(main)
