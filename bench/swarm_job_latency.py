"""One-operator job start to finish on the swarm runtime vs a bare ``docker service create`` + wait of the same
service (informational; proposed target: under 300 ms beyond the same service with its job network, at the
median: the network is the price of isolation, measured apart).

A real three-node swarm on this machine (tests/swarm/cluster.py: the main engine as manager, two workers in
network namespaces). Claret (``--runtime swarm`` against the manager): Jobs.Create, upload one small file,
Jobs.Start, Jobs.Status every 10 ms until STOPPED (HEALTHY). Bare: the same service body
(``services.jobs.runtimes.swarm.service_spec``: same image ``busybox:latest``, command, binds, env, labels,
limits, one replicated-job task pinned to a worker) created through the manager's API, its task polled every
10 ms until complete, then removed. Runs alternate; the overhead is the difference of the medians. A third
series, bare with the job's network (an internal overlay made before the service, removed after it, as Claret
does per job), says how much of the overhead that isolation costs. Needs root, iproute2 and a Docker engine
with ``busybox:latest`` (scripts/docker-engine, scripts/test-images).

    .venv/bin/python bench/swarm_job_latency.py [--runs 12]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import time

from docker_job_latency import engine_problem
from harness import Result, claret_server, median, print_series, report, run, scratch, skip
from jobs_common import Clara, bare_spec, one_operator_pipeline, timed_job

from services.jobs.runtimes.docker import PathMapping
from services.jobs.runtimes.swarm import network_spec, service_spec
from tests.swarm.cluster import swarm_cluster, unsupported

NAME = "swarm_job_latency"
COMMAND = ["sh", "-c", "cp /input/* /output/"]
POLL = 0.01
TARGET_MS = 300.0


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--json-out")
    options = parser.parse_args()
    problem = engine_problem() or unsupported()
    if problem is not None:
        skip(NAME, problem)
        return
    import aiodocker

    claret_ms: list[float] = []
    bare_ms: list[float] = []
    networked_ms: list[float] = []
    faults: list[str] = []
    with swarm_cluster() as swarm, scratch("swarm") as work:
        worker = swarm.workers[0]
        with claret_server(work, runtime="swarm", profile_name=NAME) as server:
            docker = aiodocker.Docker()
            try:
                async with server.channel() as channel:
                    clara = Clara(channel)
                    pipeline_id = await clara.pipeline(one_operator_pipeline(COMMAND))

                    async def bare_job(index: int, record: bool, networked: bool = False) -> None:
                        spec = bare_spec(work / "bare", COMMAND, index=index)
                        spec = dataclasses.replace(spec, node=worker.node_id)
                        (spec.mounts[0].source / "hello.txt").write_bytes(b"hello world\n")
                        t0 = time.perf_counter()
                        network = None
                        if networked:
                            made = network_spec(spec.job_id, spec.labels)
                            network = (await docker._query_json("networks/create", "POST", data=json.dumps(made)))["Id"]
                        body = json.dumps(service_spec(spec, PathMapping(work, None), 1.0, network))
                        created = await docker._query_json("services/create", method="POST", data=body)
                        filters = json.dumps({"service": [created["ID"]]})
                        while True:
                            tasks = await docker._query_json("tasks", params={"filters": filters})
                            if tasks and tasks[0]["Status"]["State"] in ("complete", "failed", "rejected"):
                                break
                            await asyncio.sleep(POLL)
                        async with docker._query(f"services/{created['ID']}", method="DELETE"):
                            pass
                        if network is not None:
                            async with docker._query(f"networks/{network}", method="DELETE"):
                                pass
                        elapsed = time.perf_counter() - t0
                        assert tasks[0]["Status"]["State"] == "complete", tasks[0]["Status"]
                        assert (spec.mounts[1].source / "hello.txt").exists()
                        if record:
                            (networked_ms if networked else bare_ms).append(elapsed * 1000)

                    await bare_job(0, False)  # warm up
                    claret_job = functools.partial(timed_job, clara, pipeline_id, POLL, faults=faults)
                    await claret_job(into=None)  # warm up
                    for index in range(options.runs):
                        steps = [
                            bare_job(100 + index, True),
                            claret_job(into=claret_ms),
                            bare_job(200 + index, True, networked=True),
                        ]
                        for step in steps if index % 2 else reversed(steps):
                            await step
            finally:
                await docker.close()
    if not claret_ms:
        raise SystemExit(f"{NAME}: every Claret job failed: {faults[:1]}")
    claret, bare = median(claret_ms), median(bare_ms)
    overhead = claret - bare
    print_series({"claret": claret_ms, "bare": bare_ms, "bare + job network": networked_ms})
    network = median(networked_ms) - bare
    note = f"overhead {overhead:.1f} ms at the median of {len(claret_ms)}, of which the job network {network:.0f} ms"
    if faults:
        note += f"; {len(faults)} job(s) FAULTED"
    report(
        Result(
            NAME,
            claret,
            bare,
            "ms",
            claret / bare,
            f"< {TARGET_MS:g} ms beyond bare + job network (proposed)",
            overhead - network < TARGET_MS and not faults,
            note,
        )
    )


if __name__ == "__main__":
    run(main)
