"""Does a job's cost stay flat as history grows? Status, Create and List(running) with 100,000 jobs in the
database against the same server with 1,000 (target: each <= 1.2x), and the start-up to serving with 100,000.

Both databases are made by the server's own migrations, then filled directly (one transaction of stopped
jobs, each with its operator and payload rows, as Create, Start and the end leave them), so the history
costs seconds to build rather than hours of jobs. The latencies are medians of sequential calls from one
client, rounds alternating between the two servers.

    .venv/bin/python bench/history_scaling.py [--large 100000] [--small 1000] [--calls 300] [--rounds 4]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable

from harness import Result, claret_server, median, report, request_header, run, scratch
from jobs_common import Clara, fill_history, one_operator_pipeline

from protos.nvidia.clara.platform import common_pb2, jobs_pb2, jobs_pb2_grpc

NAME = "history_scaling"
TARGET = 1.2
STARTUP_TARGET_S = 3.0


async def latency(call: Callable[[], Awaitable[object]], calls: int) -> float:
    """Median milliseconds of ``calls`` sequential calls."""
    times = []
    for _ in range(calls):
        begin = time.perf_counter()
        await call()
        times.append((time.perf_counter() - begin) * 1000)
    return median(times)


async def measure(address: str, pipeline_id: str, job_id: str, calls: int) -> dict[str, float]:
    """Status of an old job, Create of a new one, List of the running jobs: median ms each."""
    import grpc.aio

    async with grpc.aio.insecure_channel(address) as channel:
        stub = jobs_pb2_grpc.JobsStub(channel)
        status = jobs_pb2.JobsStatusRequest(header=request_header(), job_id=common_pb2.Identifier(value=job_id))
        create = jobs_pb2.JobsCreateRequest(
            header=request_header(), pipeline_id=common_pb2.Identifier(value=pipeline_id), name="new"
        )
        running = jobs_pb2.JobsListRequest(
            header=request_header(), filter=jobs_pb2.JobsListRequest.JobFilter(has_state=[jobs_pb2.JOB_STATE_RUNNING])
        )

        async def listed() -> object:
            return [reply async for reply in stub.List(running)]

        return {
            "status": await latency(lambda: stub.Status(status), calls),
            "create": await latency(lambda: stub.Create(create), calls // 3),
            "list_running": await latency(listed, calls),
        }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json-out")
    options = parser.parse_args()
    sizes = {"small": options.small, "large": options.large}
    figures: dict[str, dict[str, list[float]]] = {size: {} for size in sizes}
    startup: dict[str, float] = {}
    with scratch("history") as work:
        pipelines = {}
        for size, jobs in sizes.items():  # migrate through a first start, then fill while it is down
            (work / size).mkdir()
            with claret_server(work / size) as server:
                async with server.channel() as channel:
                    pipelines[size] = await Clara(channel).pipeline(one_operator_pipeline(["true"]))
            fill_history(work / size / "data" / "claret.db", jobs)
        for round_ in range(options.rounds):
            for size in sizes if round_ % 2 == 0 else reversed(list(sizes)):
                begin = time.perf_counter()
                with claret_server(work / size) as server:
                    startup.setdefault(size, time.perf_counter() - begin)
                    results = await measure(server.address, pipelines[size], f"{7:032x}", options.calls)
                for rpc, ms in results.items():
                    figures[size].setdefault(rpc, []).append(ms)
    for rpc in figures["small"]:
        for size in sizes:
            rounds = " ".join(f"{ms:6.2f}" for ms in figures[size][rpc])
            print(f"  {rpc:>12} {size:>5}: {rounds} ms  (median {median(figures[size][rpc]):.2f})")
    ratios = {rpc: median(figures["large"][rpc]) / median(figures["small"][rpc]) for rpc in figures["small"]}
    worst = max(ratios, key=lambda rpc: ratios[rpc])
    report(
        Result(
            NAME,
            median(figures["large"][worst]),
            median(figures["small"][worst]),
            f"ms ({worst})",
            ratios[worst],
            f"<= {TARGET}x ({options.large} vs {options.small} jobs); start-up < {STARTUP_TARGET_S:g} s",
            ratios[worst] <= TARGET and startup["large"] < STARTUP_TARGET_S,
            ", ".join(f"{rpc} {ratio:.2f}x" for rpc, ratio in ratios.items())
            + f"; start-up to serving {startup['large']:.2f} s with {options.large} jobs"
            f" ({startup['small']:.2f} s with {options.small})",
        )
    )


if __name__ == "__main__":
    run(main)
