"""The GPUs page: each GPU as Clara.Utilization reports it, the operators it names on it (job and since when,
from Jobs.Status), and graphs of its compute and memory utilization over the last minutes.

The graphs come from a short history the console keeps (:class:`GpuHistory`): Utilization answers one
moment, and a graph needs several. They are drawn here as inline SVG, so the page needs no script or style
beyond the console's own files (the CSP allows nothing else)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from claret.client import PlatformClient
from claret.errors import ClientError
from claret.records import Gpu, Job
from services.console.common import MISSING, Client, page, platform
from shared.logging import get_logger

log = get_logger("claret.console")

SAMPLE_EVERY_S = 5.0
"""How often the console asks Utilization, while it samples at all (after the first GPU page was asked for)."""
HISTORY_S = 300.0
"""How far back a graph goes; older samples, and GPUs not reported for as long, are forgotten."""
CHART_WIDTH, CHART_HEIGHT = 300, 100
"""The graphs' SVG coordinates: time across, 0-100 % up."""

COMPUTE, MEMORY = 1, 2
"""Where each measure is in a sample (see :class:`Trace`)."""
GpuKey = tuple[str, int]
"""A GPU as Utilization names it: its node and its PCIe bus."""


@dataclass
class Trace:
    """One GPU's latest report and its recent samples: (monotonic time, compute, memory utilization)."""

    latest: Gpu
    points: deque[tuple[float, float, float]] = field(default_factory=deque)


class GpuHistory:
    """Utilization samples of every GPU over the last :data:`HISTORY_S`, taken every :data:`SAMPLE_EVERY_S`
    by one task of the console: it starts with the first page that wants them (a console nobody looks at
    asks the platform nothing) and stops with the console (:meth:`close`)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.every_s = SAMPLE_EVERY_S
        self.span_s = HISTORY_S
        self.problem: str | None = None
        """Why the latest sample failed (the platform unreachable, or without the Clara service); None if it did not."""
        self._traces: dict[GpuKey, Trace] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._sampled = asyncio.Event()

    async def traces(self) -> list[Trace]:
        """Every GPU reported in the last :data:`HISTORY_S`, by node and bus; the first call starts the
        sampling and waits for its first sample."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._sample_forever(), name="console GPU sampling")
        await self._sampled.wait()
        return [self._traces[key] for key in sorted(self._traces)]

    async def close(self) -> None:
        """Stop sampling for good: a page asked for after this gets the samples as they were."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._closed = True
        self._sampled.set()

    async def _sample_forever(self) -> None:
        while True:
            try:
                self.add(await self._client().utilization(), time.monotonic())
                self.problem = None
            except ClientError as exc:
                self.problem = exc.message
            except Exception as exc:  # a sampler that died would leave every later graph frozen
                log.warning("GPU utilization not sampled", error=str(exc))
                self.problem = str(exc)
            self._sampled.set()
            await asyncio.sleep(self.every_s)

    def add(self, gpus: Iterable[Gpu], now: float) -> None:
        """One sample of each GPU, taken at ``now`` (monotonic); what is older than the span is forgotten."""
        for gpu in gpus:
            trace = self._traces.setdefault((gpu.node_id, gpu.pcie_id), Trace(gpu))
            trace.latest = gpu
            trace.points.append((now, gpu.compute_utilization, gpu.memory_utilization))
        oldest = now - self.span_s
        for key, trace in list(self._traces.items()):
            while trace.points and trace.points[0][0] < oldest:
                trace.points.popleft()
            if not trace.points:
                del self._traces[key]


@dataclass(frozen=True)
class Holder:
    """An operator the platform names on a GPU, with its job (None where Jobs.Status does not know it)."""

    operator: str
    job_id: str | None
    job: Job | None

    @property
    def since(self) -> datetime | None:
        """When the operator started, as its job says."""
        found = [op.started for op in self.job.operators if op.name == self.operator] if self.job else []
        return found[0] if found else None


@dataclass(frozen=True)
class GpuView:
    """What the page shows of one GPU: its latest report, its holders, and its graph's two lines."""

    gpu: Gpu
    holders: tuple[Holder, ...]
    compute: Line
    memory: Line


class GpuPages:
    """The page and its live part, which the browser asks again every sampling interval."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.history = GpuHistory(client)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/gpus", self.gpus), web.get("/gpus/live", self.gpus_live)]

    async def on_cleanup(self, _app: web.Application) -> None:
        await self.history.close()

    async def gpus(self, request: web.Request) -> web.StreamResponse:
        return page("gpus.html", request, **await self._view())

    async def gpus_live(self, request: web.Request) -> web.StreamResponse:
        return page("_gpus_live.html", request, **await self._view())

    async def _view(self) -> dict[str, Any]:
        history = self.history
        traces = await history.traces()
        now = time.monotonic()
        async with platform(self._client) as client:
            jobs = await _jobs(client, {p.job_id for t in traces for p in t.latest.processes if p.job_id})
        views = [
            GpuView(
                trace.latest,
                tuple(Holder(p.name, p.job_id, jobs.get(p.job_id or "")) for p in trace.latest.processes),
                line(trace.points, now, history.span_s, COMPUTE),
                line(trace.points, now, history.span_s, MEMORY),
            )
            for trace in traces
        ]
        return {
            "gpus": views,
            "problem": history.problem,
            "every_ms": int(history.every_s * 1000),
            "every_s": f"{history.every_s:g}",
            "span": span_words(history.span_s),
            "width": CHART_WIDTH,
            "height": CHART_HEIGHT,
        }


async def _jobs(client: PlatformClient, job_ids: Iterable[str]) -> dict[str, Job]:
    """The jobs named on GPUs, by id; one the platform does not know (or a pipeline service's, whose "job"
    is no job) is left out and shown by its id."""
    found = {}
    for job_id in sorted(job_ids):
        try:
            found[job_id] = await client.job_status(job_id)
        except ClientError as exc:
            if exc.code not in MISSING:
                raise
    return found


@dataclass(frozen=True)
class Line:
    """One line of a graph: SVG ``points``, and its latest point (marked, so one sample shows too)."""

    points: str
    x: float
    y: float


def line(samples: Sequence[tuple[float, ...]], now: float, span_s: float, column: int) -> Line:
    """One column of a GPU's samples as a line: time across the span ending ``now``, the fraction (0..1)
    up the chart (SVG's y grows downwards)."""
    start = now - span_s
    xy = [
        (
            max(0.0, min(1.0, (sample[0] - start) / span_s)) * CHART_WIDTH,
            (1.0 - max(0.0, min(1.0, sample[column]))) * CHART_HEIGHT,
        )
        for sample in samples
    ]
    x, y = xy[-1] if xy else (CHART_WIDTH, CHART_HEIGHT)
    return Line(" ".join(f"{x:.1f},{y:.1f}" for x, y in xy), round(x, 1), round(y, 1))


def span_words(seconds: float) -> str:
    """How far back a graph goes, in words: "5 minutes", "15 seconds"."""
    return f"{seconds / 60:g} minutes" if seconds >= 120 else f"{seconds:g} seconds"
