"""Jobs.List of 50,000 jobs streamed by Claret vs a bare grpc.aio server streaming the same messages (target:
>= 0.5 of its rate).

The database is filled directly with stopped jobs (bench/jobs_common.py ``fill_history``); Claret's replies
to a List of every state are captured once and handed to the bare server (bench/bare_server.py), so both
send the same bytes. Rounds alternate; the figure is jobs listed per second, median of the rounds.

    .venv/bin/python bench/list_streaming.py [--jobs 50000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time

from harness import Result, bare_server, claret_server, cpu_seconds, median, report, request_header, run, scratch
from jobs_common import fill_history

from protos.nvidia.clara.platform import jobs_pb2, jobs_pb2_grpc

NAME = "list_streaming"
TARGET = 0.5
EVERY_STATE = [jobs_pb2.JOB_STATE_PENDING, jobs_pb2.JOB_STATE_RUNNING, jobs_pb2.JOB_STATE_STOPPED]


async def listed(stub: jobs_pb2_grpc.JobsStub) -> list[bytes]:
    request = jobs_pb2.JobsListRequest(
        header=request_header(), filter=jobs_pb2.JobsListRequest.JobFilter(has_state=EVERY_STATE)
    )
    return [reply.SerializeToString() async for reply in stub.List(request)]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json-out")
    options = parser.parse_args()
    rates: dict[str, list[float]] = {"claret": [], "bare": []}
    cpu: dict[str, list[float]] = {"claret": [], "bare": []}
    with scratch("list") as work:
        with claret_server(work):  # its migrations make the database
            pass
        fill_history(work / "data" / "claret.db", options.jobs)
        with claret_server(work, profile_name=NAME) as claret:
            async with claret.channel() as channel:
                replies = await listed(jobs_pb2_grpc.JobsStub(channel))
                assert len(replies) == options.jobs, len(replies)
                capture = work / "list-replies.bin"
                capture.write_bytes(b"".join(len(r).to_bytes(4, "big") + r for r in replies))
                with bare_server(work, list_replies=capture, profile_name=NAME) as bare:
                    async with bare.channel() as bare_channel:
                        subjects = {
                            "claret": (jobs_pb2_grpc.JobsStub(channel), claret.pid),
                            "bare": (jobs_pb2_grpc.JobsStub(bare_channel), bare.pid),
                        }
                        for round_ in range(options.rounds):
                            for who in ("bare", "claret") if round_ % 2 == 0 else ("claret", "bare"):
                                stub, pid = subjects[who]
                                before, begin = cpu_seconds(pid), time.perf_counter()
                                got = await listed(stub)
                                elapsed = time.perf_counter() - begin
                                assert got == replies, f"{who} sent other bytes"
                                rates[who].append(len(got) / elapsed)
                                cpu[who].append((cpu_seconds(pid) - before) / len(got) * 1e6)
    for who in rates:
        rounds = " ".join(f"{rate:8.0f}" for rate in rates[who])
        print(
            f"  {who:>6}: {rounds} jobs/s (median {median(rates[who]):.0f}); server CPU us/job {median(cpu[who]):.1f}"
        )
    claret_rate, bare_rate = median(rates["claret"]), median(rates["bare"])
    ratio = claret_rate / bare_rate
    report(
        Result(
            NAME,
            claret_rate,
            bare_rate,
            "jobs/s",
            ratio,
            f">= {TARGET} ({options.jobs} jobs listed)",
            ratio >= TARGET,
            f"server CPU per job bare:claret {median(cpu['bare']) / median(cpu['claret']):.2f}",
        )
    )


if __name__ == "__main__":
    run(main)
