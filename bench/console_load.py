"""Jobs.Status calls per second with the web console open and polling vs without (target: >= 0.9 of the rate
without).

One server (sandbox runtime) holds 20 finished two-operator jobs (so the pages have rows, a DAG, logs and
files) and the one-operator job bench/status_rate.py asks about; Jobs.Status is measured as status_rate
measures it (its ``hammer``: 64 callers in flight on one channel). Rounds alternate between Status alone and
Status while simulated browsers poll the console at console.js's cadence: 5 jobs pages (``GET /jobs/rows?``
every 2 s) and 5 job pages (``GET /jobs/<id>/live`` every 1 s, five different jobs), each waiting its
interval after a reply, as the script does, their phases spread over the interval, one HTTP session each.

The browsers run in a process of their own (this script with ``--browsers``, started once, told to start and
stop polling over a pipe, idle between): real browsers are not in the benchmark's process, and in it their
HTTP clients would share its event loop and CPU with the Status callers, so a slower Status rate would
partly measure the benchmark itself. Both processes still share the machine's cores with the server, as
they do in every benchmark here. The figure is the median round of each; the note gives the console
requests per second served while polling and their median latency.

    .venv/bin/python bench/console_load.py [--jobs 20] [--seconds 3] [--rounds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field

import aiohttp
from harness import (
    PYTHON,
    ROOT,
    Result,
    claret_server,
    cpu_seconds,
    free_port,
    median,
    percentile,
    report,
    run,
    scratch,
    show_rounds,
)
from jobs_common import Clara, check_healthy
from status_rate import hammer, status_target

NAME = "console_load"
TARGET = 0.9
JOBS_PAGES, JOBS_EVERY = 5, 2.0
JOB_PAGES, JOB_EVERY = 5, 1.0
"""Open pages and their refresh intervals (s): services/console/templates/*.html ``data-every``."""
CHAIN = """api-version: 0.4.0
name: console-bench
operators:
- name: copier
  container:
    image: busybox
    command: ["sh", "-c", "cp -r /input/. /output/ && echo copied $(ls /input | wc -l) files"]
  input: [{path: /input}]
  output: [{path: /output}]
- name: shouter
  container:
    image: busybox
    command: ["sh", "-c", "for f in /in/*; do tr a-z A-Z < $f > /out/$(basename $f).upper; done; echo shouted"]
  input: [{from: copier, path: /in}]
  output: [{path: /out}]
"""


# -- the browsers' process --------------------------------------------------------------------------------------


@dataclass
class Polled:
    """What the pages fetched while polling: latencies (ms) by kind ("rows", "live")."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {"rows": [], "live": []})
    errors: list[str] = field(default_factory=list)


async def poll(
    session: aiohttp.ClientSession, url: str, kind: str, every: float, phase: float, stop: asyncio.Event, into: Polled
) -> None:
    """One open page: its first fetch after ``phase`` seconds, then each ``every`` seconds after a reply."""
    delay = phase
    while True:
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return
        except TimeoutError:
            pass
        begin = time.perf_counter()
        async with session.get(url) as reply:
            body = await reply.text()
        if reply.status != 200 or ("<svg" not in body if kind == "live" else "data-job=" not in body):
            into.errors.append(f"{url}: {reply.status} {body[:200]!r}")
        into.latencies[kind].append((time.perf_counter() - begin) * 1000)
        delay = every


async def browsers(base: str, job_ids: list[str]) -> None:
    """Read "start"/"stop" lines on stdin; after each "stop", print what was fetched since "start" as JSON."""
    pages = [("rows", f"{base}/jobs/rows?", JOBS_EVERY, i * JOBS_EVERY / JOBS_PAGES) for i in range(JOBS_PAGES)]
    pages += [
        ("live", f"{base}/jobs/{job_ids[i % len(job_ids)]}/live", JOB_EVERY, i * JOB_EVERY / JOB_PAGES)
        for i in range(JOB_PAGES)
    ]
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    sessions = [aiohttp.ClientSession() for _ in pages]  # a browser each: its own keep-alive connection
    try:
        while line := (await commands.readline()).strip():
            assert line == b"start", line
            stop, polled = asyncio.Event(), Polled()
            begin = time.perf_counter()
            tasks = [
                asyncio.create_task(poll(session, url, kind, every, phase, stop, polled))
                for session, (kind, url, every, phase) in zip(sessions, pages, strict=True)
            ]
            assert (await commands.readline()).strip() == b"stop"
            stop.set()
            seconds = time.perf_counter() - begin
            await asyncio.gather(*tasks)  # let requests in flight finish: the next round starts with none
            print(json.dumps({"seconds": seconds, **polled.latencies, "errors": polled.errors}), flush=True)
    finally:
        for session in sessions:
            await session.close()


# -- the benchmark ----------------------------------------------------------------------------------------------


@dataclass
class Browsers:
    """The browsers' process, seen from the benchmark."""

    process: asyncio.subprocess.Process

    async def start(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"start\n")
        await self.process.stdin.drain()

    async def stop(self) -> tuple[float, dict[str, list[float]]]:
        """(seconds polled, latencies in ms by kind) since start."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(b"stop\n")
        await self.process.stdin.drain()
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the browsers' process exited with {await self.process.wait()}")
        polled = json.loads(line)
        if polled["errors"]:
            raise AssertionError(f"console requests failed: {polled['errors'][:3]}")
        return float(polled["seconds"]), {kind: polled[kind] for kind in ("rows", "live")}


async def wait_listening(port: int, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the console does not listen on port {port} after {within} s") from None
            await asyncio.sleep(0.05)
        else:
            writer.close()
            await writer.wait_closed()
            return


async def finished_jobs(clara: Clara, count: int) -> list[str]:
    """``count`` two-operator jobs with one small input file each, run to the end."""
    pipeline_id = await clara.pipeline(CHAIN)

    async def one(n: int) -> str:
        job_id, payload_id = await clara.create(pipeline_id, f"console {n}")
        await clara.upload(payload_id, "a.txt", b"hello console\n")
        await clara.start(job_id)
        job, _ = await clara.wait_stopped(job_id, 0.05, within=60)
        check_healthy(job)
        return job_id

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--json-out")
    parser.add_argument("--browsers", metavar="URL", help=argparse.SUPPRESS)  # the browsers' process
    parser.add_argument("--job-ids", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.browsers:
        await browsers(options.browsers, options.job_ids.split(","))
        return
    rates: dict[str, list[float]] = {"alone": [], "polled": []}
    cpu: dict[str, list[float]] = {"alone": [], "polled": []}
    served: list[float] = []
    console_cpu: list[tuple[float, int, int]] = []
    """Per polled round: server CPU seconds, Status calls, console requests."""
    latencies: dict[str, list[float]] = {"rows": [], "live": []}
    console_port = free_port()
    with (
        scratch("console") as work,
        claret_server(work, env={"CLARET_CONSOLE_PORT": str(console_port)}, profile_name=NAME) as claret,
    ):
        await wait_listening(console_port)
        async with claret.channel() as channel:
            clara = Clara(channel)
            job_ids = await finished_jobs(clara, options.jobs)
            stub, request, expected = await status_target(channel)
            process = await asyncio.create_subprocess_exec(
                PYTHON,
                __file__,
                "--browsers",
                f"http://127.0.0.1:{console_port}",
                "--job-ids",
                ",".join(job_ids),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=ROOT,
            )
            browser = Browsers(process)
            try:
                await hammer(stub, request, options.concurrency, 0.3, expected)  # warm up
                await browser.start()  # and the console (templates compiled, dot run once)
                await asyncio.sleep(1.2)
                await browser.stop()
                for round_ in range(options.rounds):
                    for who in ("alone", "polled") if round_ % 2 == 0 else ("polled", "alone"):
                        if who == "polled":
                            await browser.start()
                        before = cpu_seconds(claret.pid)
                        rate, calls = await hammer(stub, request, options.concurrency, options.seconds, expected)
                        used = cpu_seconds(claret.pid) - before
                        cpu[who].append(used / calls * 1e6)
                        rates[who].append(rate)
                        if who == "polled":
                            seconds, polled = await browser.stop()
                            requests = len(polled["rows"]) + len(polled["live"])
                            served.append(requests / seconds)
                            console_cpu.append((used, calls, requests))
                            for kind in latencies:
                                latencies[kind] += polled[kind]
            finally:
                if process.stdin is not None:
                    process.stdin.close()
                await process.wait()
    show_rounds(rates, "calls/s", cpu, "us/call")
    # The server CPU a console request costs: what a polled round used beyond its Status calls at the
    # median cost of a call alone (rows and live pages together; dot's own CPU is not the server's).
    per_call = median(cpu["alone"]) / 1e6
    per_request = median([(used - calls * per_call) / requests * 1000 for used, calls, requests in console_cpu])
    pairs = [p / a for p, a in zip(rates["polled"], rates["alone"], strict=True)]
    print(
        f"  console: {' '.join(f'{s:7.1f}' for s in served)} requests/s; median latency /jobs/rows "
        f"{median(latencies['rows']):.1f} ms, /jobs/<id>/live {median(latencies['live']):.1f} ms "
        f"(p90 {percentile(latencies['live'], 0.9):.1f} ms); server CPU about {per_request:.1f} ms a request"
    )
    print(f"  polled/alone by round: {' '.join(f'{r:.2f}' for r in pairs)} (median {median(pairs):.2f})")
    polled_rate, alone_rate = median(rates["polled"]), median(rates["alone"])
    ratio = polled_rate / alone_rate
    everything = latencies["rows"] + latencies["live"]
    report(
        Result(
            NAME,
            polled_rate,
            alone_rate,
            "calls/s",
            ratio,
            f">= {TARGET}",
            ratio >= TARGET,
            f"{JOBS_PAGES} jobs pages every {JOBS_EVERY:g} s + {JOB_PAGES} job pages every {JOB_EVERY:g} s: "
            f"{median(served):.1f} console requests/s served, median latency {median(everything):.1f} ms "
            f"(rows {median(latencies['rows']):.1f}, live {median(latencies['live']):.1f}), server CPU "
            f"~{per_request:.0f} ms each; {options.concurrency} Status in flight, median of {options.rounds}",
        )
    )


if __name__ == "__main__":
    run(main)
