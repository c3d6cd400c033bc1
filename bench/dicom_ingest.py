"""C-STORE ingest rate of Claret's DICOM SCP vs dcmtk's own ``storescp`` receiving the same files (target >= 0.7),
and the time from the association's release to the job's start.

500 small distinct CT instances (pydicom's ``CT_small.dcm``, 39 KB each, Explicit VR Little Endian, one study and
series) are made once. Each round sends all of them with dcmtk's ``storescu`` on one association (one
presentation context: CT Image Storage in Explicit VR Little Endian, through an association profile, as
``tests/dicom/tools.store`` proposes them), timed from storescu's start to its exit (every C-STORE answered
Success, the association released). Baseline: ``storescp`` (single process, ``-od`` a scratch folder emptied
between rounds, host lookup off), started once. Claret: ``claret serve`` (sandbox runtime) with
``CLARET_DICOM_CONFIG``: AE title ``CLARA_CT`` mapped to the one-operator pipeline ``true``, grouping per
association, storage reserve 0 GB and watermark 99%. dcmtk gets ``TCP_NODELAY=1`` (both directions of the
baseline, the sender of Claret's): without it each C-STORE waits for a delayed ACK on loopback. Rounds
alternate; the figure is the median rate of each, in instances/s (the note gives MB/s, 10^6 bytes of the
files storescu reads, and the server CPU time per instance).

After each Claret round, Jobs.List every 5 ms until the new job (made of those 500 instances) has started,
then Jobs.Status until it stopped (it must end HEALTHY, its metadata counting 500 instances). Release to
start is measured from storescu's exit (it exits on the A-RELEASE-RP, a little after the SCP saw the
A-RELEASE-RQ: ``created`` can read a millisecond below 0) to the job's ``created`` and ``started`` as the
server's database records them (the API gives whole seconds only); the printed lines also give when the
polls first saw each.

    .venv/bin/python bench/dicom_ingest.py [--instances 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import yaml
from harness import (
    Result,
    claret_server,
    cpu_seconds,
    free_port,
    median,
    report,
    run,
    scratch,
    show_rounds,
    skip,
    stop_process,
    wait_for_port,
)
from jobs_common import Clara, check_healthy, one_operator_pipeline
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from claret.records import Job

NAME = "dicom_ingest"
TARGET = 0.7
CALLED = "CLARA_CT"
POLL = 0.005
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
PROFILE = f"""[[TransferSyntaxes]]
[Syntax1]
TransferSyntax1 = {EXPLICIT_LITTLE}
[[PresentationContexts]]
[Files]
PresentationContext1 = {CT_IMAGE_STORAGE}\\Syntax1
[[Profiles]]
[Files]
PresentationContexts = Files
"""
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def make_instances(folder: Path, count: int) -> list[Path]:
    """``count`` distinct CT instances (CT_small with new UIDs) in one new study and series, as
    ``tests/dicom/tools.make_instances`` writes them."""
    found = get_testdata_file("CT_small.dcm", download=False)
    assert isinstance(found, str), "pydicom's test file CT_small.dcm is missing"
    template = pydicom.dcmread(found)
    template.StudyInstanceUID = generate_uid()
    template.SeriesInstanceUID = generate_uid()
    folder.mkdir(parents=True)
    paths = []
    for number in range(1, count + 1):
        uid = generate_uid()
        template.SOPInstanceUID = uid
        template.file_meta.MediaStorageSOPInstanceUID = uid
        template.InstanceNumber = number
        path = folder / f"{number:06d}.dcm"
        template.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def config_document(port: int) -> str:
    ae_title = {"aeTitle": CALLED, "processorSettings": {"pipeline-ingest": "bench"}}
    return yaml.safe_dump(
        {
            "dicom": {"scp": {"port": port, "aeTitles": [ae_title]}},
            "storage": {"watermarkPercent": 99, "reserveSpaceGB": 0},
        }
    )


@dataclass
class Baseline:
    port: int
    pid: int


@contextlib.contextmanager
def storescp(work: Path, folder: Path) -> Iterator[Baseline]:
    """dcmtk's ``storescp`` on a free port, storing into ``folder`` (single process, no host lookup)."""
    port = free_port()
    log = work / "storescp.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            ["storescp", "-od", str(folder), "-dhl", "-aet", CALLED, str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=DCMTK_ENV,
        )
    try:
        wait_for_port(port, process, log)
        yield Baseline(port, process.pid)
    finally:
        stop_process(process)


def wait_for_scp(port: int, timeout: float = 30) -> None:
    """The DICOM service starts with the server, perhaps just after its gRPC port listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"Claret's DICOM SCP does not listen on port {port} after {timeout} s")


def send(port: int, profile: Path, files: list[Path]) -> float:
    """Seconds from storescu's start to its exit; every file must have been stored."""
    command = ["storescu", "-xf", str(profile), "Files", "-aec", CALLED, "127.0.0.1", str(port), *map(str, files)]
    begin = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=DCMTK_ENV, timeout=120, check=False)
    elapsed = time.perf_counter() - begin
    assert done.returncode == 0, f"storescu exited with {done.returncode}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return elapsed


@dataclass
class Started:
    """One Claret round's job, seconds after storescu's exit."""

    created: float
    started: float
    seen_created: float
    seen_started: float


async def wait_for_job(clara: Clara, known: set[str], released: float, database: Path, count: int) -> Started:
    """The new job's creation and start after ``released`` (a ``time.time()``); waits until it stopped HEALTHY."""
    seen_created = seen_started = None
    job: Job | None = None
    deadline = time.monotonic() + 60
    while seen_started is None:
        assert time.monotonic() < deadline, "no job started within 60 s of the association's release"
        new = [j for j in await clara.client.list_jobs() if j.id not in known]
        if new:
            assert len(new) == 1, f"{len(new)} new jobs from one association"
            job = new[0]
            seen_created = seen_created or time.time() - released
            if job.started is not None:
                seen_started = time.time() - released
                break
        await asyncio.sleep(POLL)
    assert job is not None and seen_created is not None
    known.add(job.id)
    stopped, _ = await clara.wait_stopped(job.id, 0.02)
    check_healthy(stopped)
    assert stopped.metadata.get("dicom.instances") == str(count), dict(stopped.metadata)
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        created, started = conn.execute("SELECT created, started FROM jobs WHERE id = ?", (job.id,)).fetchone()
    return Started(created - released, started - released, seen_created, seen_started)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json-out")
    options = parser.parse_args()
    if shutil.which("storescu") is None or shutil.which("storescp") is None:
        skip(NAME, "no dcmtk (storescu, storescp)")
        return
    with scratch("dicom") as work:
        files = make_instances(work / "instances", options.instances)
        megabytes = sum(path.stat().st_size for path in files) / 1e6
        profile = work / "storescu.cfg"
        profile.write_text(PROFILE)
        received = work / "storescp"
        received.mkdir()
        config = work / "dicom.yaml"
        scp_port = free_port()
        config.write_text(config_document(scp_port))
        env = {"CLARET_DICOM_CONFIG": str(config)}
        with storescp(work, received) as baseline, claret_server(work, env=env, profile_name=NAME) as server:
            wait_for_scp(scp_port)
            async with server.channel() as channel:
                clara = Clara(channel)
                await clara.pipeline(one_operator_pipeline(["true"]))
                known = {job.id for job in await clara.client.list_jobs()}
                database = work / "data" / "claret.db"
                rates: dict[str, list[float]] = {"claret": [], "dcmtk": []}
                cpu: dict[str, list[float]] = {"claret": [], "dcmtk": []}
                starts: list[Started] = []

                def empty_baseline() -> None:
                    shutil.rmtree(received)
                    received.mkdir()

                async def claret_round(record: bool) -> None:
                    before = cpu_seconds(server.pid)
                    seconds = send(scp_port, profile, files)
                    released = time.time()
                    used = cpu_seconds(server.pid) - before
                    result = await wait_for_job(clara, known, released, database, len(files))
                    if record:
                        rates["claret"].append(len(files) / seconds)
                        cpu["claret"].append(used / len(files) * 1000)
                        starts.append(result)

                def baseline_round(record: bool) -> None:
                    before = cpu_seconds(baseline.pid)
                    seconds = send(baseline.port, profile, files)
                    used = cpu_seconds(baseline.pid) - before
                    stored = sum(1 for _ in received.iterdir())
                    assert stored == len(files), f"storescp stored {stored} of {len(files)}"
                    empty_baseline()
                    if record:
                        rates["dcmtk"].append(len(files) / seconds)
                        cpu["dcmtk"].append(used / len(files) * 1000)

                baseline_round(False)  # warm up the page cache, both SCPs' code paths, the job path
                await claret_round(False)
                for round_ in range(options.rounds):
                    if round_ % 2 == 0:
                        baseline_round(True)
                        await claret_round(True)
                    else:
                        await claret_round(True)
                        baseline_round(True)
    show_rounds(rates, "instances/s", cpu, "ms/instance")
    for label, attribute in (
        ("created", "created"),
        ("started", "started"),
        ("seen created", "seen_created"),
        ("seen started", "seen_started"),
    ):
        values = [getattr(start, attribute) * 1000 for start in starts]
        print(
            f"  release to {label:>12}: "
            + " ".join(f"{v:7.1f}" for v in values)
            + f" ms  (median {median(values):.1f})"
        )
    claret, dcmtk = median(rates["claret"]), median(rates["dcmtk"])
    ratio = claret / dcmtk
    per_instance = megabytes / len(files)
    note = (
        f"{len(files)} x {per_instance * 1000:.0f} KB on one association, median of {options.rounds}; "
        f"{claret * per_instance:.1f} vs {dcmtk * per_instance:.1f} MB/s; "
        f"server CPU {median(cpu['claret']):.2f} vs {median(cpu['dcmtk']):.2f} ms/instance; "
        f"release to job created {median([s.created for s in starts]) * 1000:.0f} ms, "
        f"started {median([s.started for s in starts]) * 1000:.0f} ms"
    )
    report(Result(NAME, claret, dcmtk, "instances/s", ratio, f">= {TARGET}", ratio >= TARGET, note))


if __name__ == "__main__":
    run(main)
