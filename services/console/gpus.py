"""The GPUs page: each GPU of the scheduling API's ledger with the operator (or pipeline service) holding it,
its utilization as Clara.Utilization reports it, and graphs of its compute and memory utilization over the
last minutes (``ledger.py`` joins the two answers).

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
from typing import Any

from aiohttp import web

from claret.errors import ClientError
from claret.records import Gpu
from services.console.common import Client, JobNames, page
from services.console.ledger import LedgerGpu, ledger
from services.console.queue import Queue, read_queue
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
    """One GPU's latest report, its place in it (NVML's index), and its recent samples: (monotonic time,
    compute, memory utilization)."""

    latest: Gpu
    index: int
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
        places: dict[str, int] = {}
        for gpu in gpus:
            index = places[gpu.node_id] = places.get(gpu.node_id, -1) + 1
            trace = self._traces.setdefault((gpu.node_id, gpu.pcie_id), Trace(gpu, index))
            trace.latest, trace.index = gpu, index
            trace.points.append((now, gpu.compute_utilization, gpu.memory_utilization))
        oldest = now - self.span_s
        for key, trace in list(self._traces.items()):
            while trace.points and trace.points[0][0] < oldest:
                trace.points.popleft()
            if not trace.points:
                del self._traces[key]


@dataclass(frozen=True)
class GpuView:
    """What the page shows of one GPU: its ledger entry, and its graph's two lines (None: no utilization)."""

    gpu: LedgerGpu
    compute: Line | None
    memory: Line | None


class GpuPages:
    """The page and its live part, which the browser asks again every sampling interval."""

    def __init__(self, client: Client, names: JobNames) -> None:
        self._client = client
        self._names = names
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
        traces = {(t.latest.node_id, t.latest.pcie_id): t for t in await history.traces()}
        queue, ledger_problem = await self._queue()
        now = time.monotonic()
        views = []
        for entry in ledger(queue.snapshot if queue else None, [(t.index, t.latest) for t in traces.values()]):
            trace = traces[entry.measured.node_id, entry.measured.pcie_id] if entry.measured else None
            if trace is None:
                views.append(GpuView(entry, None, None))
            else:
                graph = [line(trace.points, now, history.span_s, column) for column in (COMPUTE, MEMORY)]
                views.append(GpuView(entry, *graph))
        return {
            "gpus": views,
            "queue": queue,
            "problem": history.problem,
            "ledger_problem": ledger_problem,
            "every_ms": int(history.every_s * 1000),
            "every_s": f"{history.every_s:g}",
            "span": span_words(history.span_s),
            "width": CHART_WIDTH,
            "height": CHART_HEIGHT,
        }

    async def _queue(self) -> tuple[Queue | None, str | None]:
        """The ledger (a snapshot listing one waiting operator: only its grants are wanted), or why not: the
        utilization is worth showing without it."""
        try:
            return await read_queue(self._client(), self._names, limit=1), None
        except ClientError as exc:
            return None, exc.message


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
