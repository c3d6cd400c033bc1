"""One-operator job start to finish on the Docker runtime vs a bare aiodocker create/start/wait/remove of the same
container (informational; proposed target: overhead under 50 ms at the median).

Claret (``--runtime docker``): Jobs.Create, upload one small file, Jobs.Start, Jobs.Status every 10 ms until
STOPPED (HEALTHY). Bare: the same container body (``services.jobs.runtimes.docker.container_config``: same
image ``busybox:latest``, command, binds, env, labels, init, no network) created, started, waited for and
removed with aiodocker. Runs alternate; the overhead is the difference of the medians. Skipped when no
Docker engine with ``busybox:latest`` answers (scripts/docker-engine, scripts/test-images).

    .venv/bin/python bench/docker_job_latency.py [--runs 16]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import shutil
import subprocess
import time

from harness import Result, claret_server, median, print_series, report, run, scratch, skip
from jobs_common import Clara, bare_spec, one_operator_pipeline, timed_job

from services.jobs.runtimes.docker import PathMapping, container_config

NAME = "docker_job_latency"
COMMAND = ["sh", "-c", "cp /input/* /output/"]
POLL = 0.01
TARGET_MS = 50.0


def engine_problem() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "no docker command"
    if subprocess.run([docker, "info"], capture_output=True, timeout=20).returncode != 0:
        return "no Docker engine answers (scripts/docker-engine starts one)"
    if subprocess.run([docker, "image", "inspect", "busybox:latest"], capture_output=True, timeout=20).returncode:
        return "no busybox:latest image (scripts/test-images builds it)"
    return None


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--json-out")
    options = parser.parse_args()
    problem = engine_problem()
    if problem is not None:
        skip(NAME, problem)
        return
    import aiodocker

    claret_ms: list[float] = []
    bare_ms: list[float] = []
    faults: list[str] = []
    with scratch("docker") as work, claret_server(work, runtime="docker", profile_name=NAME) as server:
        docker = aiodocker.Docker()
        try:
            async with server.channel() as channel:
                clara = Clara(channel)
                pipeline_id = await clara.pipeline(one_operator_pipeline(COMMAND))

                async def bare_job(index: int, record: bool) -> None:
                    spec = bare_spec(work / "bare", COMMAND, index=index)
                    (spec.mounts[0].source / "hello.txt").write_bytes(b"hello world\n")
                    config = container_config(spec, PathMapping(work, None))
                    t0 = time.perf_counter()
                    container = await docker.containers.create(config, name=f"claret-bench-{spec.job_id}")
                    await container.start()
                    result = await container.wait()
                    await container.delete(force=True)
                    elapsed = time.perf_counter() - t0
                    assert result.get("StatusCode") == 0, result
                    assert (spec.mounts[1].source / "hello.txt").exists()
                    if record:
                        bare_ms.append(elapsed * 1000)

                await bare_job(0, False)  # warm up
                claret_job = functools.partial(timed_job, clara, pipeline_id, POLL, faults=faults)
                await claret_job(into=None)  # warm up
                for index in range(options.runs):
                    pair = [bare_job(100 + index, True), claret_job(into=claret_ms)]
                    for step in pair if index % 2 else reversed(pair):
                        await step
        finally:
            await docker.close()
        await asyncio.sleep(0)
    if not claret_ms:
        raise SystemExit(f"{NAME}: every Claret job failed: {faults[:1]}")
    claret, bare = median(claret_ms), median(bare_ms)
    overhead = claret - bare
    print_series({"claret": claret_ms, "bare": bare_ms})
    print(
        "  (the container start in the engine dominates both and varies by 100 ms or more on a busy machine: "
        "read the overhead with its spread)"
    )
    note = f"overhead {overhead:.1f} ms at the median of {len(claret_ms)}"
    if faults:
        note += f"; {len(faults)} job(s) FAULTED"
    report(
        Result(
            NAME,
            claret,
            bare,
            "ms",
            claret / bare,
            f"overhead < {TARGET_MS:g} ms (proposed)",
            overhead < TARGET_MS and not faults,
            note,
        )
    )


if __name__ == "__main__":
    run(main)
