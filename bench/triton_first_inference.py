"""Time to a job's first inference through Claret's Triton, as a ratio to Triton's own start-and-load bare.

Claret (sandbox runtime, ``CLARET_TRITON_HOME=.triton``; ``bash scripts/triton`` makes it): Jobs.Create, Jobs.Start
and Jobs.Status every 10 ms until STOPPED for a one-operator job that lists the Python-backend model
``tests/data/models/adder`` and asks Triton for one inference (python3 with urllib). *Cold*: no Triton runs
(the job starts it and has the model loaded); *warm*: the Triton of the job before serves it, the model
loaded. Clara.Stop after each warm job, so the next round is cold again. Baseline: the same tritonserver,
flags and model started bare (a subprocess on free ports), polled until ready, the model loaded and asked
once. Rounds alternate bare, cold, warm; medians count. The figure is the cold median; the note gives the
warm one. Informational: no target is set.

    .venv/bin/python bench/triton_first_inference.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness import ROOT, Result, claret_server, free_port, median, report, run, scratch, skip
from jobs_common import Clara, check_healthy

from claret.records import ModelType
from claret.transfers import zip_folder
from services.jobs.triton import triton_service

NAME = "triton_first_inference"
TRITON_HOME = ROOT / ".triton"
ADDER = ROOT / "tests" / "data" / "models" / "adder"
POLL = 0.01
BODY = {"inputs": [{"name": "INPUT0", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
ASK = (
    "import json, os, urllib.request; "
    f"body = json.dumps({BODY!r}).encode(); "
    "url = 'http://' + os.environ['NVIDIA_TRITON_HTTPURI'] + '/v2/models/adder/infer'; "
    "urllib.request.urlopen(urllib.request.Request(url, body, {'Content-Type': 'application/json'})).read()"
)
PIPELINE = f"""api-version: 0.6.0
name: infer
operators:
- name: classify
  container: {{image: busybox, command: ["python3", "-c", {json.dumps(ASK)}]}}
  models: [{{name: adder}}]
"""


def http(method: str, url: str, body: bytes | None = None) -> int:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def bare_round(work: Path) -> float:
    """Seconds from starting tritonserver to the model's first answer, with Claret's flags."""
    repository = work / "bare-models"
    if not repository.exists():
        shutil.copytree(ADDER, repository / "adder")
    command = list(triton_service(TRITON_HOME, repository).container.command)
    http_port, grpc_port = free_port(), free_port()
    command = [
        arg.replace("=/models", f"={repository}").replace("=8000", f"={http_port}").replace("=8001", f"={grpc_port}")
        for arg in command
    ]
    base = f"http://127.0.0.1:{http_port}"
    env = {"PATH": f"{TRITON_HOME / 'bin'}:/usr/local/bin:/usr/bin:/bin"}
    t0 = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while http("GET", f"{base}/v2/health/ready") != 200:
            if process.poll() is not None:
                raise SystemExit(f"{NAME}: tritonserver exited with {process.returncode}")
            time.sleep(POLL)
        assert http("POST", f"{base}/v2/repository/models/adder/load", b"") == 200
        assert http("POST", f"{base}/v2/models/adder/infer", json.dumps(BODY).encode()) == 200
        return time.perf_counter() - t0
    finally:
        process.terminate()
        process.wait(timeout=30)


async def claret_job(clara: Clara, pipeline_id: str) -> float:
    t0 = time.perf_counter()
    job_id, _ = await clara.create(pipeline_id)
    await clara.start(job_id)
    job, _ = await clara.wait_stopped(job_id, POLL, within=120)
    elapsed = time.perf_counter() - t0
    check_healthy(job)
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json-out")
    options = parser.parse_args()
    if not (TRITON_HOME / ".ready").exists():
        skip(NAME, "no .triton (bash scripts/triton makes it)")
        return
    bare_s: list[float] = []
    cold_s: list[float] = []
    warm_s: list[float] = []
    env = {"CLARET_TRITON_HOME": str(TRITON_HOME), "CLARET_STOP_GRACE": "1"}
    with scratch("triton") as work, claret_server(work, env=env, profile_name=NAME) as server:
        archive = zip_folder(ADDER, work / "adder.zip")  # its files at the top: the platform takes that too
        async with server.channel() as channel:
            clara = Clara(channel)
            await clara.client.upload_model("adder", ModelType.PY_TORCH, archive)
            pipeline_id = await clara.pipeline(PIPELINE)
            bare_round(work)  # warm up the page cache for both
            await claret_job(clara, pipeline_id)
            await clara.client.stop_platform()
            for _ in range(options.rounds):
                bare_s.append(bare_round(work))
                cold_s.append(await claret_job(clara, pipeline_id))
                warm_s.append(await claret_job(clara, pipeline_id))
                await clara.client.stop_platform()
    bare, cold, warm = median(bare_s), median(cold_s), median(warm_s)
    for who, values in (("bare", bare_s), ("cold", cold_s), ("warm", warm_s)):
        print(
            f"  {who:>5}: "
            + "  ".join(f"{v * 1000:7.1f}" for v in values)
            + f" ms  (median {median(values) * 1000:.1f})"
        )
    note = f"warm job (Triton and model ready) {warm * 1000:.0f} ms = {warm / bare:.2f}x bare start-and-load"
    report(Result(NAME, cold * 1000, bare * 1000, "ms", cold / bare, "informational", None, note))


if __name__ == "__main__":
    run(main)
