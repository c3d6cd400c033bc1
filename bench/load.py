"""Load: the three services as separate processes and 32 concurrent clients mixing create, upload, start,
status, list and download for a bounded time on loopback.

Passes when there were zero errors, zero "database is locked" in any server's log, and each server's
memory stayed flat (resident size at the end within 25 % + 20 MiB of what it was after the first third, or
after ``--early`` seconds). It also prints each server's end-to-early resident size ratio; the growth target
(#21) is a run of ten minutes against its first: ``--seconds 600 --early 60``, ratio <= 1.1.

    .venv/bin/python bench/load.py [--seconds 120] [--clients 32] [--early SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from harness import claret_server, request_header, scratch

from protos.nvidia.clara.platform import (
    common_pb2,
    jobs_pb2,
    jobs_pb2_grpc,
    payloads_pb2,
    payloads_pb2_grpc,
    pipelines_pb2_grpc,
)
from protos.nvidia.clara.platform import pipelines_pb2 as ppb

PIPELINE = """api-version: 0.4.0
name: load
operators:
- name: copy
  container: {image: busybox, command: ["sh", "-c", "cp /input/* /output/"]}
  requests: {cpu: 0, memory: 16}
  input: [{path: /input}]
  output: [{path: /output}]
"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Client:
    """One of the concurrent clients: its own channels, a loop of the whole job flow, and what went wrong."""

    def __init__(
        self, addresses: dict[str, str], pipeline_id: str, rng: random.Random, counts: Counter[str], errors: list[str]
    ) -> None:
        import grpc

        self.channels = [grpc.aio.insecure_channel(a) for a in addresses.values()]
        self.pipelines = pipelines_pb2_grpc.PipelinesStub(self.channels[0])
        self.jobs = jobs_pb2_grpc.JobsStub(self.channels[1])
        self.payloads = payloads_pb2_grpc.PayloadsStub(self.channels[2])
        self.pipeline_id, self.rng, self.counts, self.errors = pipeline_id, rng, counts, errors

    def check(self, what: str, header: common_pb2.ResponseHeader) -> bool:
        self.counts[what] += 1
        if header.code < 0:
            self.errors.append(f"{what}: {header.code} {list(header.messages)}")
            return False
        return True

    async def one_job(self) -> None:
        created = await self.jobs.Create(
            jobs_pb2.JobsCreateRequest(
                header=request_header(), pipeline_id=common_pb2.Identifier(value=self.pipeline_id), name="load"
            )
        )
        if not self.check("create", created.header):
            return
        data = self.rng.randbytes(self.rng.randint(1, 256 * 1024))

        async def chunks():  # type: ignore[no-untyped-def]
            for start in range(0, len(data), 64 * 1024):
                yield payloads_pb2.PayloadsUploadRequest(
                    header=request_header(),
                    payload_id=created.payload_id,
                    details=payloads_pb2.PayloadFileDetails(name="in.bin"),
                    data=data[start : start + 64 * 1024],
                )

        if not self.check("upload", (await self.payloads.Upload(chunks())).header):
            return
        if not self.check("start", (await self.jobs.Start(jobs_pb2.JobsStartRequest(job_id=created.job_id))).header):
            return
        while True:
            status = await self.jobs.Status(jobs_pb2.JobsStatusRequest(job_id=created.job_id))
            if not self.check("status", status.header) or status.state == jobs_pb2.JOB_STATE_STOPPED:
                break
            await asyncio.sleep(0.05)
        if status.status != jobs_pb2.JOB_STATUS_HEALTHY:
            self.errors.append(f"job {created.job_id.value} ended {status.status}: {list(status.messages)}")
            return
        listing = jobs_pb2.JobsListRequest(
            filter=jobs_pb2.JobsListRequest.JobFilter(
                has_state=[jobs_pb2.JOB_STATE_RUNNING], pipeline_id=[common_pb2.Identifier(value=self.pipeline_id)]
            )
        )
        async for reply in self.jobs.List(listing):
            self.check("list", reply.header)
        received = b""
        request = payloads_pb2.PayloadsDownloadRequest(payload_id=created.payload_id, name="/operators/copy/in.bin")
        async for reply in self.payloads.Download(request):
            if not self.check("download", reply.header):
                return
            received += reply.data
        if received != data:
            self.errors.append(f"job {created.job_id.value}: downloaded {len(received)} bytes, sent {len(data)}")

    async def run(self, until: float) -> None:
        try:
            while time.monotonic() < until:
                try:
                    await self.one_job()
                except Exception as exc:  # an RPC failure is an error of the run, not of the load tool
                    self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            for channel in self.channels:
                await channel.close()


RSS_GROWTH_TARGET = 1.1
"""The most a server's resident size may grow from the early sample to the end (#21: 10 minutes vs 1)."""


async def drive(addresses: dict[str, str], clients: int, seconds: float, early_at: float, pids: dict[str, int]) -> int:
    import grpc

    async with grpc.aio.insecure_channel(addresses["pipelines"]) as channel:

        async def definition():  # type: ignore[no-untyped-def]
            yield ppb.PipelinesCreateRequest(definition=ppb.PipelineDefinitionFile(path="load.yaml", content=PIPELINE))

        pipeline_id = (await pipelines_pb2_grpc.PipelinesStub(channel).Create(definition())).pipeline_id.value
    counts: Counter[str] = Counter()
    errors: list[str] = []
    start = time.monotonic()
    rng = random.Random(1)
    workers = [Client(addresses, pipeline_id, random.Random(rng.random()), counts, errors) for _ in range(clients)]
    tasks = [asyncio.create_task(w.run(start + seconds)) for w in workers]
    await asyncio.sleep(early_at)
    early = {name: rss_mib(pid) for name, pid in pids.items()}
    await asyncio.gather(*tasks)
    late = {name: rss_mib(pid) for name, pid in pids.items()}
    elapsed = time.monotonic() - start
    print(f"{clients} clients, {elapsed:.0f} s: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"jobs/s {counts['start'] / elapsed:.1f}; errors {len(errors)}")
    for error in errors[:10]:
        print("  error:", error)
    grown = {name: (early[name], late[name]) for name in pids if late[name] > early[name] * 1.25 + 20}
    for name in sorted(pids):
        print(f"  {name}: RSS {early[name]:.0f} -> {late[name]:.0f} MiB{' (grew)' if name in grown else ''}")
    growth = max(late[name] / early[name] for name in pids)
    print(
        f"RSS growth {elapsed:.0f} s vs {early_at:.0f} s: worst {growth:.3f}x "
        f"(target <= {RSS_GROWTH_TARGET}x: {'met' if growth <= RSS_GROWTH_TARGET else 'MISSED'})"
    )
    ok = not errors and not grown
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--early", type=float, help="when the early memory sample is taken (default: a third in)")
    options = parser.parse_args()
    with scratch("load") as workdir, ExitStack() as stack:
        servers = {
            name: stack.enter_context(claret_server(workdir, name=name, env={"CLARET_SERVICES": name}))
            for name in ("pipelines", "jobs", "payloads")
        }
        code = asyncio.run(
            drive(
                {n: s.address for n, s in servers.items()},
                options.clients,
                options.seconds,
                options.early if options.early is not None else options.seconds / 3,
                {n: s.pid for n, s in servers.items()},
            )
        )
        locked = [log.name for log in workdir.glob("*.log") if "database is locked" in log.read_text()]
    if locked:
        print("'database is locked' in:", ", ".join(locked))
    verdict = "met" if code == 0 and not locked else "MISSED"
    print(
        f"load: {options.clients} clients for {options.seconds:g} s: zero errors, no lock errors, flat memory: "
        f"{verdict}"
    )
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    sys.exit(main())
