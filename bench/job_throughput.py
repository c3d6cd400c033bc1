"""Jobs per second with 8 concurrent clients, trivial operators, sandbox runtime, as a ratio to bare
bubblewrap runs at 8 in flight (target >= 0.6).

Each client (its own channel) loops: Jobs.Create, Jobs.Start, Jobs.Status every 5 ms until STOPPED (HEALTHY).
The pipeline has one operator running ``true`` that requests one core, and the server declares 64
(``CLARET_CPUS``, bench/harness.py), so the scheduler may run all 8 at once, as the baseline does.
Baseline: 8 concurrent loops spawning the same bare bubblewrap command (``bwrap_arguments``, spawned as
``jobs_common.run_bwrap`` does) and awaiting it. Rounds alternate; the median round of each counts. The
ratio is Claret's jobs/s to bare bwrap runs/s, and a job that ends other than HEALTHY fails the target.
Also printed: the server's CPU time per job and the Status polls each job took.

    .venv/bin/python bench/job_throughput.py [--clients 8] [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from harness import Result, claret_server, cpu_seconds, median, report, run, scratch, show_rounds
from jobs_common import Clara, bare_spec, check_healthy, one_operator_pipeline, run_bwrap

NAME = "job_throughput"
COMMAND = ["true"]
POLL = 0.005
TARGET = 0.6


POLLS: list[int] = []
"""Status calls each job took to be seen STOPPED."""
FAULTS: list[str] = []
"""Messages of jobs that did not end HEALTHY (they are not counted as done)."""


async def claret_round(clients: list[Clara], pipeline_id: str, seconds: float) -> tuple[float, int]:
    """(healthy jobs per second, healthy jobs)."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def client(clara: Clara) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            job_id, _ = await clara.create(pipeline_id)
            await clara.start(job_id)
            job, polls = await clara.wait_stopped(job_id, POLL)
            POLLS.append(polls)
            try:
                check_healthy(job)
            except AssertionError as exc:
                FAULTS.append(str(exc))
            else:
                done += 1

    begin = time.perf_counter()
    await asyncio.gather(*(client(clara) for clara in clients))
    return done / (time.perf_counter() - begin), done


async def bare_round(work_count: int, specs: list, seconds: float) -> float:  # type: ignore[type-arg]
    done = 0
    deadline = time.perf_counter() + seconds

    async def spawner(index: int) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            code = await run_bwrap(specs[index])
            assert code == 0, code
            done += 1

    begin = time.perf_counter()
    await asyncio.gather(*(spawner(i) for i in range(work_count)))
    return done / (time.perf_counter() - begin)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json-out")
    options = parser.parse_args()
    rates: dict[str, list[float]] = {"claret": [], "bare": []}
    server_ms: list[float] = []
    client_ms: list[float] = []
    with scratch("throughput") as work, claret_server(work, profile_name=NAME) as server:
        specs = [bare_spec(work / "bare", COMMAND, mounts=False, index=i) for i in range(options.clients)]
        channels = [server.channel() for _ in range(options.clients)]
        try:
            clients = [Clara(channel) for channel in channels]
            pipeline_id = await clients[0].pipeline(one_operator_pipeline(COMMAND, mounts=False, requests="{cpu: 1}"))
            await claret_round(clients, pipeline_id, 0.5)  # warm up
            await bare_round(options.clients, specs, 0.3)
            for _ in range(options.rounds):
                rates["bare"].append(await bare_round(options.clients, specs, options.seconds / 2))
                server_before, client_before = cpu_seconds(server.pid), time.process_time()
                rate, done = await claret_round(clients, pipeline_id, options.seconds)
                rates["claret"].append(rate)
                server_ms.append((cpu_seconds(server.pid) - server_before) / max(done, 1) * 1000)
                client_ms.append((time.process_time() - client_before) / max(done, 1) * 1000)
        finally:
            for channel in channels:
                await channel.close()
    show_rounds(rates, "per s")
    print(
        f"  CPU per Claret job: server {median(server_ms):.1f} ms, this client {median(client_ms):.1f} ms; "
        f"Status polls per job: {sum(POLLS) / max(len(POLLS), 1):.1f} (mean) "
        f"(medians; 2 cores give 20 ms of CPU per job at 100 jobs/s, bwrap included)"
    )
    claret, bare = median(rates["claret"]), median(rates["bare"])
    note = (
        f"{options.clients} clients, `true`, median of {options.rounds}; baseline = bare bwrap runs/s; "
        f"server CPU {median(server_ms):.1f} ms/job"
    )
    if FAULTS:
        print(f"  {len(FAULTS)} job(s) did not end HEALTHY, e.g. {FAULTS[0]}")
        note += f"; {len(FAULTS)} job(s) FAULTED"
    report(
        Result(
            NAME,
            claret,
            bare,
            "jobs/s",
            claret / bare,
            f">= {TARGET:g}",
            claret / bare >= TARGET and not FAULTS,
            note,
        )
    )


if __name__ == "__main__":
    run(main)
