"""Jobs per second on the PostgreSQL store, as a ratio to the SQLite store (the default).

The same server on each store, in alternating rounds (bench/server_comparison.py), with the local queue and
with the shared queue of jobs replicas. PostgreSQL is the test server of scripts/postgres (started unless one
answers), a fresh database per run. Target: PostgreSQL keeps at least 0.8 of SQLite's jobs/s on the local queue.

    .venv/bin/python bench/store_throughput.py [--clients 8] [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

import psycopg
from harness import Result, report, run, skip
from job_throughput import FAULTS
from server_comparison import compare, options

NAME = "store_throughput"
TARGET = 0.8
ROOT = Path(__file__).resolve().parent.parent
SERVER = f"postgresql://postgres@127.0.0.1:{os.environ.get('CLARET_TEST_POSTGRES_PORT', '55432')}"


def databases(*names: str, drop: bool = False) -> None:
    """Create (or drop) databases on the test PostgreSQL server, starting it first."""
    if not drop:
        subprocess.run(["bash", str(ROOT / "scripts" / "postgres")], capture_output=True, check=True)
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        for name in names:
            statement = f'DROP DATABASE "{name}" WITH (FORCE)' if drop else f'CREATE DATABASE "{name}"'
            admin.execute(statement)  # type: ignore[arg-type]


async def main() -> None:
    chosen = options()
    names = [f"claret_bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    try:
        await asyncio.to_thread(databases, *names)
    except (subprocess.CalledProcessError, psycopg.Error) as exc:
        skip(NAME, f"no PostgreSQL server (scripts/postgres): {exc}")
        return
    try:
        shared = {"CLARET_QUEUE": "database", "CLARET_REPLICA": "one"}
        rates = await compare(
            {
                "sqlite": {},
                "postgresql": {"CLARET_DATABASE_URL": f"{SERVER}/{names[0]}"},
                "sqlite shared queue": shared,
                "postgresql shared queue": {**shared, "CLARET_DATABASE_URL": f"{SERVER}/{names[1]}"},
            },
            chosen,
        )
    finally:
        await asyncio.to_thread(databases, *names, drop=True)
    postgres, sqlite = rates["postgresql"], rates["sqlite"]
    shared_ratio = rates["postgresql shared queue"] / rates["sqlite shared queue"]
    note = (
        f"{chosen.clients} clients, `true`, median of {chosen.rounds}; baseline = SQLite; with the shared queue: "
        f"{rates['postgresql shared queue']:.1f} vs {rates['sqlite shared queue']:.1f} jobs/s, ratio {shared_ratio:.3f}"
    )
    if FAULTS:
        note += f"; {len(FAULTS)} job(s) did not end HEALTHY, e.g. {FAULTS[0]}"
    ratio = postgres / sqlite
    report(Result(NAME, postgres, sqlite, "jobs/s", ratio, f">= {TARGET:g}", ratio >= TARGET and not FAULTS, note))


if __name__ == "__main__":
    run(main)
