"""One-operator job start to finish on the sandbox runtime vs the same bubblewrap command run bare
(target: overhead under 5 ms at the median).

Claret: Jobs.Create, upload one small file, Jobs.Start, then Jobs.Status every 2 ms until STOPPED (the job
must end HEALTHY). Bare: the same operator (``sh -c 'cp /input/* /output/'``, the same mounts and
variables, the command line from ``services.jobs.runtimes.sandbox.bwrap_arguments``) spawned bare
(``subprocess.Popen``, i.e. vfork, awaited through a pidfd: see ``jobs_common.run_bwrap``). Runs alternate;
the overhead is the difference of the medians. Jobs that end other than HEALTHY are counted and fail the
target.

    .venv/bin/python bench/job_latency.py [--runs 40]
"""

from __future__ import annotations

import argparse
import time

from harness import Result, claret_server, median, percentile, report, run, scratch
from jobs_common import Clara, bare_spec, check_healthy, one_operator_pipeline, run_bwrap

NAME = "job_latency"
COMMAND = ["sh", "-c", "cp /input/* /output/"]
POLL = 0.002
TARGET_MS = 5.0


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--json-out")
    options = parser.parse_args()
    phases: dict[str, list[float]] = {"create": [], "upload": [], "start": [], "wait": [], "polls": []}
    claret_ms: list[float] = []
    faults: list[str] = []
    bare_ms: list[float] = []
    with scratch("latency") as work, claret_server(work, profile_name=NAME) as server:
        async with server.channel() as channel:
            clara = Clara(channel)
            pipeline_id = await clara.pipeline(one_operator_pipeline(COMMAND))

            async def claret_job(record: bool) -> None:
                t0 = time.perf_counter()
                job_id, payload_id = await clara.create(pipeline_id)
                t1 = time.perf_counter()
                await clara.upload(payload_id, "hello.txt", b"hello world\n")
                t2 = time.perf_counter()
                await clara.start(job_id)
                t3 = time.perf_counter()
                job, polls = await clara.wait_stopped(job_id, POLL)
                t4 = time.perf_counter()
                try:
                    check_healthy(job)
                except AssertionError as exc:
                    faults.append(str(exc))
                    return
                if record:
                    claret_ms.append((t4 - t0) * 1000)
                    steps = (t1 - t0, t2 - t1, t3 - t2, t4 - t3)
                    for phase, seconds in zip(("create", "upload", "start", "wait"), steps, strict=True):
                        phases[phase].append(seconds * 1000)
                    phases["polls"].append(polls)

            async def bare_job(index: int, record: bool) -> None:
                spec = bare_spec(work / "bare", COMMAND, index=index)
                (spec.mounts[0].source / "hello.txt").write_bytes(b"hello world\n")
                t0 = time.perf_counter()
                code = await run_bwrap(spec)
                elapsed = time.perf_counter() - t0
                assert code == 0, f"bare bwrap exited with {code}: {spec.log_path.read_text()}"
                assert (spec.mounts[1].source / "hello.txt").exists()
                if record:
                    bare_ms.append(elapsed * 1000)

            for index in range(3):  # warm up
                await bare_job(index, False)
                await claret_job(False)
            for index in range(options.runs):
                if index % 2:
                    await bare_job(100 + index, True)
                    await claret_job(True)
                else:
                    await claret_job(True)
                    await bare_job(100 + index, True)
    claret, bare = median(claret_ms), median(bare_ms)
    overhead = claret - bare
    print(
        f"  claret: median {claret:6.1f} ms  p90 {percentile(claret_ms, 0.9):6.1f} ms   "
        + "  ".join(f"{k} {median(v):.1f}" for k, v in phases.items())
        + "  (ms; polls = count)"
    )
    print(f"    bare: median {bare:6.1f} ms  p90 {percentile(bare_ms, 0.9):6.1f} ms")
    note = f"overhead {overhead:.1f} ms at the median of {len(claret_ms)}"
    if faults:
        print(f"  {len(faults)} job(s) did not end HEALTHY, e.g. {faults[0]}")
        note += f"; {len(faults)} job(s) FAULTED"
    report(
        Result(
            NAME,
            claret,
            bare,
            "ms",
            claret / bare,
            f"overhead < {TARGET_MS:g} ms",
            overhead < TARGET_MS and not faults,
            note,
        )
    )


if __name__ == "__main__":
    run(main)
