"""Jobs per second of differently configured servers, measured in alternating rounds in one run.

The client loop is job_throughput.py's (8 clients: Jobs.Create, Jobs.Start, Jobs.Status until STOPPED; one
operator running ``true``, sandbox runtime). Each configuration gets its own server and data dir; rounds
alternate between them so that the machine's noise falls on all alike; the median round of each counts.
"""

from __future__ import annotations

import argparse
import contextlib

from harness import claret_server, median, scratch, show_rounds
from job_throughput import COMMAND, claret_round
from jobs_common import Clara, one_operator_pipeline


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json-out")
    return parser.parse_args()


async def compare(configurations: dict[str, dict[str, str]], chosen: argparse.Namespace) -> dict[str, float]:
    """Median jobs per second of each configuration (server environment variables by name)."""
    rates: dict[str, list[float]] = {name: [] for name in configurations}
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, list[Clara]] = {}
        pipelines: dict[str, str] = {}
        for name, env in configurations.items():
            workdir = stack.enter_context(scratch(f"compare-{name}"))
            profile = f"compare-{name.replace(' ', '-')}"  # BENCH_PYSPY: <dir>/compare-<name>-claret.txt
            server = stack.enter_context(claret_server(workdir, env=env, profile_name=profile))
            channels = [server.channel() for _ in range(chosen.clients)]
            for channel in channels:
                stack.push_async_callback(channel.close)
            clients[name] = [Clara(channel) for channel in channels]
            text = one_operator_pipeline(COMMAND, mounts=False, requests="{cpu: 1}")
            pipelines[name] = await clients[name][0].pipeline(text)
            await claret_round(clients[name], pipelines[name], 0.5)  # warm up
        for _ in range(chosen.rounds):
            for name in configurations:
                rate, _ = await claret_round(clients[name], pipelines[name], chosen.seconds)
                rates[name].append(rate)
    show_rounds(rates, "per s")
    return {name: median(values) for name, values in rates.items()}
