"""Claret's scheduling API (claret.jobs.Scheduling) against a real server: the GPU ledger, the queue in the
order it starts operators with why each waits, operators waiting for upstream ones; and its refusals."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from claret.errors import ClientError
from claret.records import QueueSnapshot
from tests.jobs_flow import Platform, one_operator, serving

GPU_SLEEPER = one_operator("sleep 30", requests="{gpu: 1}")
CHAIN = """api-version: 0.4.0
name: chain
operators:
- name: first
  container: {image: busybox, command: ["sh", "-c", "sleep 30"]}
  output: [{path: /out}]
- name: second
  container: {image: busybox, command: ["true"]}
  input: [{from: first, path: /in}]
"""


async def snapshot_when(clara: Platform, ready: str, within: float = 20) -> QueueSnapshot:
    """The snapshot once ``ready`` (an expression over ``s``) holds."""
    deadline = time.monotonic() + within
    while True:
        s = await clara.client.queue_snapshot()
        if eval(ready, {}, {"s": s}) or time.monotonic() > deadline:
            return s
        await asyncio.sleep(0.05)


async def test_the_ledger_the_queue_and_the_upstream_waits(tmp_path: Path) -> None:
    async with serving(tmp_path, gpus=("0",), cpus=4) as clara:
        gpu = await clara.pipeline(GPU_SLEEPER)
        holder, waiter = await clara.job(gpu, name="holder"), await clara.job(gpu, name="waiter", priority=3)
        chain = await clara.job(await clara.pipeline(CHAIN), name="chain")
        for job in (holder, waiter, chain):
            assert (await clara.start(job.job_id.value)).header.code == 0
            if job is holder:
                await clara.wait_operator(job.job_id.value, "op", 2)

        s = await snapshot_when(clara, "len(s.held) == 2 and s.waiting and s.blocked")
        (node,) = s.nodes
        assert (node.name, node.capacity.gpu_ids, node.free.gpu_ids) == ("", ("0",), ())
        held = {grant.job_id: grant for grant in s.held}
        assert held[holder.job_id.value].gpu_ids == ("0",) and held[holder.job_id.value].operator == "op"
        assert held[holder.job_id.value].since is not None
        assert held[chain.job_id.value].operator == "first" and held[chain.job_id.value].gpu_ids == ()
        (waiting,) = s.waiting
        assert (waiting.job_id, waiting.operator, waiting.priority, waiting.gpus) == (
            waiter.job_id.value,
            "op",
            "higher",
            1,
        )
        assert waiting.reason == "waits for room: needs 1 GPU (0 free)"
        assert s.waiting_total == 1
        assert [(b.job_id, b.operator, b.upstream) for b in s.blocked] == [(chain.job_id.value, "second", ("first",))]

        for job in (holder, waiter, chain):
            await clara.client.cancel_job(job.job_id.value)
        s = await snapshot_when(clara, "not s.held and not s.waiting and not s.blocked")
        assert (s.held, s.waiting, s.blocked, s.nodes[0].free.gpu_ids) == ((), (), (), ("0",))


async def test_a_negative_limit_is_refused_naming_it(tmp_path: Path) -> None:
    async with serving(tmp_path) as clara:
        with pytest.raises(ClientError, match="limit must be 0"):
            await clara.client.queue_snapshot(limit=-1)
