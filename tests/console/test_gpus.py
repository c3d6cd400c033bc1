"""The console's GPUs page in a real browser. These machines have no GPU, so NVML is simulated as the other
Utilization tests do: a fake ``pynvml`` module under a real platform (its Clara.Utilization, shared/gpus.py's
sampling and the wire all real), with GPUs declared (``CLARET_GPUS``) beside it; and a fake Clara service
without the scheduling API. Who holds a GPU while jobs run is tested with the queue page (test_queue.py)."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import types
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc.aio
import pytest
from playwright.async_api import Page, expect

from claret.records import Gpu, GpuProcess, HeldGrant, QueueNode, QueueSnapshot, Room
from protos.nvidia.clara.platform import clara_pb2, clara_pb2_grpc
from services.console import Console
from services.console import gpus as console_gpus
from services.console.ledger import ledger
from shared.wire import ok_header
from tests.console.browser import accessibility_problems, browser_page, screenshot
from tests.console.conftest import GPU_EVERY_S
from tests.console.test_console import console, started_job
from tests.console.test_queue import GPU_SLEEPER
from tests.helpers import free_port, make_settings

pytestmark = pytest.mark.usefixtures("fast_refresh")


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    async with browser_page(tmp_path) as opened:
        yield opened


class FakeNvml(types.ModuleType):
    """``pynvml`` as a driver with two GPUs (PCIe buses 3 and 4) answers it; ``compute`` and ``memory`` are
    the utilization percentages each GPU reports next."""

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.compute = [10, 0]
        self.memory = [20, 0]

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUtilizationRates(self, index: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(gpu=self.compute[index], memory=self.memory[index])

    def nvmlDeviceGetMemoryInfo(self, index: int) -> types.SimpleNamespace:
        mb = 1024 * 1024
        return types.SimpleNamespace(free=(80_000 - 800 * self.memory[index]) * mb, used=800 * self.memory[index] * mb)

    def nvmlDeviceGetPciInfo(self, index: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(bus=3 + index)


async def test_the_gpus_page_graphs_simulated_nvml_samples_live(
    tmp_path: Path, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)  # what shared/gpus.py imports for each sample
    node = socket.gethostname()
    async with console(tmp_path, gpus=("0", "7")) as platform:  # NVML's GPU 0 (bus 3) and one it does not see
        trainer = await started_job(platform, GPU_SLEEPER, "trainer", {})  # granted the lowest free id: 0
        await page.goto(f"{platform.url}/jobs")
        await page.get_by_role("navigation", name="Main").get_by_role("link", name="GPUs").click()
        await expect(page.locator("h1")).to_have_text("GPUs")
        busy, idle = page.locator('tr[data-gpu="0"]'), page.locator(f'tr[data-gpu="{node}/bus4"]')
        await expect(busy.locator("td.compute")).to_have_text("10 %")
        await expect(idle.locator("td.compute")).to_have_text("0 %")
        await expect(busy.locator(".holders")).to_contain_text("operator op of job trainer since ")
        assert await busy.get_by_role("link", name="trainer").get_attribute("href") == f"/jobs/{trainer}"
        await expect(idle.locator(".holders")).to_have_text("not scheduled")  # NVML's GPU 1, not in CLARET_GPUS
        declared = page.locator('tr[data-gpu="7"]')  # declared, not seen by NVML: listed, without a graph
        await expect(declared).to_contain_text("GPU 7 · local")
        await expect(declared.locator(".holders")).to_have_text("free")  # in the ledger, held by no grant
        await expect(declared.locator(".unmeasured")).to_have_text("no utilization: not seen by NVML")
        await expect(page.locator("figure.chart")).to_have_count(2)
        assert await page.locator('figure[data-gpu="7"]').count() == 0

        chart = page.locator('figure[data-gpu="0"]')
        for compute, memory in (
            (35, 25),
            (70, 30),
            (55, 40),
            (90, 50),
            (20, 45),
            (85, 30),
            (40, 55),
            (95, 70),
            (60, 45),
        ):
            nvml.compute[0], nvml.memory[0] = compute, memory
            await expect(busy.locator("td.compute")).to_have_text(f"{compute} %")  # no reload: the page is live
            await expect(busy.locator("td.memory")).to_have_text(f"{memory} %")
            await expect(chart.locator("circle.compute")).to_have_attribute("cy", f"{100 - compute:.1f}")
            await expect(chart.locator("circle.memory")).to_have_attribute("cy", f"{100 - memory:.1f}")
        points = await chart.locator("polyline.compute").get_attribute("points")
        assert points is not None and len(points.split()) >= 5, points  # a line through the samples, not one
        heights = {point.split(",")[1] for point in points.split()}
        assert {"15.0", "60.0", "5.0", "40.0"} <= heights, points
        assert await chart.locator("svg").get_attribute("aria-label") == (
            f"GPU 0 · {node} · PCIe bus 3: compute 60 %, memory 45 % now, over the last 6 seconds"
        )
        assert await accessibility_problems(page) == []
        await screenshot(page, "gpus")


@dataclass
class FakeClara(clara_pb2_grpc.ClaraServicer):
    """A Clara service reporting one GPU, on a server without the scheduling API (an older platform's)."""

    calls: int = 0

    async def Utilization(
        self, request: clara_pb2.ClaraUtilizationRequest, context: object
    ) -> AsyncIterator[clara_pb2.ClaraUtilizationResponse]:
        self.calls += 1
        metric = clara_pb2.ClaraUtilizationResponse.GpuUtilization
        gpu = metric(node_id="node-1", pcie_id=7, compute_utilization=0.5, memory_utilization=0.25)
        yield clara_pb2.ClaraUtilizationResponse(header=ok_header(), gpu_metrics=[gpu])


@pytest.fixture
async def fake_clara() -> AsyncIterator[tuple[FakeClara, str]]:
    fake = FakeClara()
    server = grpc.aio.server()
    clara_pb2_grpc.add_ClaraServicer_to_server(fake, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


async def test_without_the_ledger_the_page_still_graphs_and_samples_only_while_wanted(
    tmp_path: Path, page: Page, fake_clara: tuple[FakeClara, str]
) -> None:
    fake, address = fake_clara
    port = free_port()
    served = Console(make_settings(tmp_path, console_port=port, console_platform=address))
    await served.start()
    try:
        await asyncio.sleep(3 * GPU_EVERY_S)
        assert fake.calls == 0  # nobody looked at a GPU page yet: nothing sampled

        await page.goto(f"http://127.0.0.1:{port}/gpus")
        await expect(page.get_by_role("alert")).to_have_text(
            f"The platform did not say who holds its GPUs: the platform at {address} does not run"
            " the jobs service's scheduling API (claret.jobs.Scheduling)"
        )
        gpu = page.locator('tr[data-gpu="node-1/bus7"]')
        await expect(gpu.locator(".holders")).to_have_text("unknown")
        await expect(gpu.locator("td.compute")).to_have_text("50 %")
        await expect(page.locator('figure[data-gpu="node-1/bus7"] circle.compute')).to_have_attribute("cy", "50.0")
        await asyncio.sleep(3 * GPU_EVERY_S)
    finally:
        await served.stop()
    stopped_at = fake.calls
    assert stopped_at >= 2
    await asyncio.sleep(3 * GPU_EVERY_S)
    assert fake.calls == stopped_at  # the sampling stopped with the console


def test_the_history_forgets_old_samples_and_gpus_no_longer_reported() -> None:
    history = console_gpus.GpuHistory(lambda: pytest.fail("no platform call here"))
    history.span_s = 10.0

    def sample(pcie: int, compute: float) -> Gpu:
        return Gpu("n", pcie, compute, compute / 2, 1000, 1000, (GpuProcess("op", None),))

    now = time.monotonic()
    history.add([sample(1, 0.2), sample(2, 0.4)], now)
    history.add([sample(1, 0.45)], now + 6)
    assert [len(trace.points) for trace in history._traces.values()] == [2, 1]
    history.add([sample(1, 1.5)], now + 12)  # GPU 2 not reported for longer than the span: forgotten
    assert list(history._traces) == [("n", 1)]
    trace = history._traces[("n", 1)]
    assert [point[1] for point in trace.points] == [0.45, 1.5] and trace.latest.compute_utilization == 1.5

    drawn = console_gpus.line(trace.points, now + 12, 10.0, console_gpus.COMPUTE)
    assert drawn.points == "120.0,55.0 300.0,0.0"  # 6 s after the start of the span; 1.5 clamped to the top
    assert (drawn.x, drawn.y) == (300.0, 0.0)


def test_the_ledger_joins_utilization_by_nvml_index_on_the_jobs_services_own_node_only() -> None:
    def room(*gpu_ids: str) -> Room:
        return Room(4, 1000, gpu_ids)

    nodes = (QueueNode("", room("0", "1", "GPU-5a"), room("1")), QueueNode("swarm-2", room("0"), room()))
    held = (
        HeldGrant("a" * 32, "op", "", 1, 10, ("0",), None),
        HeldGrant("services", "svc-1", "swarm-2", 1, 10, ("0",), None),
    )
    snapshot = QueueSnapshot(nodes, held, (), 0, (), ())
    reported = [(index, Gpu("host", bus, 0.1, 0.1, 1, 1)) for index, bus in enumerate((3, 9, 4))]
    rows = ledger(snapshot, reported)
    assert [(r.key, r.measured.pcie_id if r.measured else None, len(r.holders)) for r in rows] == [
        ("0", 3, 1),  # index 0 of the jobs service's machine, held
        ("1", 9, 0),  # index 1 (the order NVML reported, not the bus's)
        ("GPU-5a", None, 0),  # a UUID: no utilization names it
        ("swarm-2/0", None, 1),  # another node's (a service holds it): Utilization reports only its own
        ("host/bus4", 4, 0),  # seen by NVML, not scheduled
    ]
    two_machines = [(0, Gpu("a", 3, 0, 0, 1, 1)), (0, Gpu("b", 3, 0, 0, 1, 1))]
    assert [r.key for r in ledger(snapshot, two_machines)][-2:] == ["a/bus3", "b/bus3"]  # ambiguous: not joined
    assert [r.key for r in ledger(None, reported)] == ["host/bus3", "host/bus9", "host/bus4"]  # no ledger read
