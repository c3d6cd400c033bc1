"""``claret create job -f DIR --start --wait`` of a one-operator job, as a fresh process, vs the same steps
through the client (claret.client) in this warm process (target: <= 3x, lower is better).

CLI: ``.venv/bin/claret --host ADDRESS create job -p PIPELINE_ID -n bench -f DIR --start --wait``, timed from
spawn to exit (it must exit 0: the job ended HEALTHY). Warm: ``PlatformClient`` create_job, upload of the
same file, start_job, then Jobs.Status polled as ``--wait`` polls (``claret.cli.POLL_FIRST_S``, doubling up
to ``POLL_MAX_S``) until STOPPED. The operator is ``true`` (sandbox runtime); DIR holds one small file.
Rounds alternate; the figure is the CLI's median, the baseline the warm client's, the ratio CLI/warm. The
project's bytecode is compiled first, as an installation has it. Also
printed: ``claret --version`` (start-up without a verb), ``python -c pass`` (the interpreter alone) and the
floor: a process that only imports what any gRPC client verb needs (asyncio, grpc.aio, click, the Jobs and
Payloads protobuf modules) and exits.

    .venv/bin/python bench/cli_job.py [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from harness import _OWN_ENV, ROOT, Result, claret_server, median, percentile, report, run, scratch
from jobs_common import Clara, check_healthy, one_operator_pipeline

from claret.cli import POLL_FIRST_S, POLL_MAX_S
from claret.records import JobState

NAME = "cli_job"
TARGET = 3.0
CLARET = ROOT / ".venv" / "bin" / "claret"
CONTENT = b"hello world\n"
PACKAGES = ("claret", "shared", "services", "protos")
FLOOR_IMPORTS = (
    "import asyncio, grpc, grpc.aio, click; "
    "from protos.nvidia.clara.platform import jobs_pb2, jobs_pb2_grpc, payloads_pb2, payloads_pb2_grpc"
)


async def spawn(*args: str) -> float:
    """Seconds from spawning ``args`` to its exit; it must exit 0."""
    environ = {k: v for k, v in os.environ.items() if k not in _OWN_ENV and not k.startswith("CLARET_")}
    begin = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *args, env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    elapsed = time.perf_counter() - begin
    assert process.returncode == 0, f"{args[:3]} exited with {process.returncode}: {(out + err).decode()[-2000:]}"
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json-out")
    options = parser.parse_args()
    # A user's installation has its bytecode written; under PYTHONDONTWRITEBYTECODE (set on some machines)
    # every CLI run would compile the changed modules again, which is not what is measured here.
    await spawn(str(CLARET.with_name("python")), "-m", "compileall", "-q", *(str(ROOT / p) for p in PACKAGES))
    times: dict[str, list[float]] = {"cli": [], "warm": [], "version": [], "python": [], "floor": []}
    with scratch("cli") as work, claret_server(work, profile_name=NAME) as server:
        folder = work / "input"
        folder.mkdir()
        (folder / "hello.txt").write_bytes(CONTENT)
        async with server.channel() as channel:
            clara = Clara(channel)
            pipeline_id = await clara.pipeline(one_operator_pipeline(["true"]))
            cli = [str(CLARET), "--host", server.address, "create", "job", "-p", pipeline_id, "-n", "bench"]
            cli += ["-f", str(folder), "--start", "--wait"]

            async def warm_job() -> float:
                begin = time.perf_counter()
                job_id, payload_id = await clara.create(pipeline_id)
                await clara.upload(payload_id, "hello.txt", CONTENT)
                await clara.start(job_id)
                delay = POLL_FIRST_S
                while (job := await clara.client.job_status(job_id)).state is not JobState.STOPPED:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, POLL_MAX_S)
                elapsed = time.perf_counter() - begin
                check_healthy(job)
                return elapsed

            subjects = {
                "cli": lambda: spawn(*cli),
                "warm": warm_job,
                "version": lambda: spawn(str(CLARET), "--version"),
                "python": lambda: spawn(str(CLARET.with_name("python")), "-c", "pass"),
                "floor": lambda: spawn(str(CLARET.with_name("python")), "-c", FLOOR_IMPORTS),
            }
            for who in subjects:  # warm up: the page cache, the server's first job
                await subjects[who]()
            for index in range(options.runs):
                for who in subjects if index % 2 == 0 else reversed(subjects):
                    times[who].append(await subjects[who]() * 1000)
    for who, values in times.items():
        print(f"  {who:>7}: median {median(values):6.1f} ms  p90 {percentile(values, 0.9):6.1f} ms")
    cli_ms, warm_ms = median(times["cli"]), median(times["warm"])
    ratio = cli_ms / warm_ms
    floor = median(times["floor"])
    note = (
        f"claret --version {median(times['version']):.0f} ms, python -c pass {median(times['python']):.0f} ms, "
        f"the stack's imports alone {floor:.0f} ms = {floor / warm_ms:.2f}x warm"
    )
    report(Result(NAME, cli_ms, warm_ms, "ms", ratio, f"<= {TARGET:g}x (CLI vs warm client)", ratio <= TARGET, note))


if __name__ == "__main__":
    run(main)
