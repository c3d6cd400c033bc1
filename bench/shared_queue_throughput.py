"""Jobs per second with the queue shared by jobs replicas (CLARET_QUEUE=database), as a ratio to the local queue.

The same client loop as job_throughput.py (8 clients: Jobs.Create, Jobs.Start, Jobs.Status until STOPPED;
one operator running ``true``, sandbox runtime) against two servers in turn: one with the in-memory queue
(the baseline) and one replica with the queue and GPU ledger in the database, each on its own data dir.
Rounds alternate; the median round of each counts. Target: the shared queue keeps at least half the rate.

    .venv/bin/python bench/shared_queue_throughput.py [--clients 8] [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib

from harness import Result, claret_server, median, report, run, scratch, show_rounds
from job_throughput import COMMAND, FAULTS, claret_round
from jobs_common import Clara, one_operator_pipeline

NAME = "shared_queue_throughput"
TARGET = 0.5


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json-out")
    options = parser.parse_args()
    queues = {"local": {"CLARET_QUEUE": "local"}, "database": {"CLARET_QUEUE": "database", "CLARET_REPLICA": "one"}}
    rates: dict[str, list[float]] = {name: [] for name in queues}
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, list[Clara]] = {}
        pipelines: dict[str, str] = {}
        for name, env in queues.items():
            server = stack.enter_context(claret_server(stack.enter_context(scratch(f"queue-{name}")), env=env))
            channels = [server.channel() for _ in range(options.clients)]
            for channel in channels:
                stack.push_async_callback(channel.close)
            clients[name] = [Clara(channel) for channel in channels]
            pipelines[name] = await clients[name][0].pipeline(
                one_operator_pipeline(COMMAND, mounts=False, requests="{cpu: 0}")
            )
            await claret_round(clients[name], pipelines[name], 0.5)  # warm up
        for _ in range(options.rounds):
            for name in queues:
                rate, _ = await claret_round(clients[name], pipelines[name], options.seconds)
                rates[name].append(rate)
    show_rounds(rates, "per s")
    shared, local = median(rates["database"]), median(rates["local"])
    note = f"{options.clients} clients, `true`, median of {options.rounds}; baseline = the same server, local queue"
    if FAULTS:
        note += f"; {len(FAULTS)} job(s) did not end HEALTHY, e.g. {FAULTS[0]}"
    report(
        Result(
            NAME,
            shared,
            local,
            "jobs/s",
            shared / local,
            f">= {TARGET:g}",
            shared / local >= TARGET and not FAULTS,
            note,
        )
    )


if __name__ == "__main__":
    run(main)
