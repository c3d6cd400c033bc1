"""Jobs per second with the queue shared by jobs replicas (CLARET_QUEUE=database), as a ratio to the local queue.

One replica on the shared queue against the same server with the in-memory queue (the baseline), both on
SQLite, in alternating rounds (bench/server_comparison.py). Target:
the shared queue keeps at least 0.95 of the local queue's jobs/s.

    .venv/bin/python bench/shared_queue_throughput.py [--clients 8] [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

from harness import Result, report, run
from job_throughput import FAULTS
from server_comparison import compare, options

NAME = "shared_queue_throughput"
TARGET = 0.95


async def main() -> None:
    chosen = options()
    rates = await compare(
        {"local": {"CLARET_QUEUE": "local"}, "database": {"CLARET_QUEUE": "database", "CLARET_REPLICA": "one"}},
        chosen,
    )
    shared, local = rates["database"], rates["local"]
    note = f"{chosen.clients} clients, `true`, median of {chosen.rounds}; baseline = the same server, local queue"
    if FAULTS:
        note += f"; {len(FAULTS)} job(s) did not end HEALTHY, e.g. {FAULTS[0]}"
    met = shared / local >= TARGET and not FAULTS
    report(Result(NAME, shared, local, "jobs/s", shared / local, f">= {TARGET:g}", met, note))


if __name__ == "__main__":
    run(main)
