"""The console's GPUs page in a real browser. These machines have no GPU, so NVML is simulated as the other
Utilization tests do: a fake ``pynvml`` module under a real platform (its Clara.Utilization, shared/gpus.py's
sampling and the wire all real), and a fake Clara service reporting the processes on a GPU (as
tests/test_cli.py's ``FakeGpus``), since Claret's own Utilization does not fill them in."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import types
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc.aio
import pytest
from playwright.async_api import Page, expect

from claret.records import Gpu, GpuProcess
from protos.nvidia.clara.platform import clara_pb2, clara_pb2_grpc, common_pb2, jobs_pb2, jobs_pb2_grpc
from services.console import Console
from services.console import gpus as console_gpus
from shared.errors import ErrorCode
from shared.wire import error_header, ok_header, timestamp
from tests.console.browser import accessibility_problems, browser_page, screenshot
from tests.console.test_console import console
from tests.helpers import free_port, make_settings

EVERY_S = 0.3


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    async with browser_page(tmp_path) as opened:
        yield opened


@pytest.fixture(autouse=True)
def fast_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Samples every 0.3 s over 6 s, so a test sees a graph across its width in seconds, not minutes."""
    monkeypatch.setattr(console_gpus, "SAMPLE_EVERY_S", EVERY_S)
    monkeypatch.setattr(console_gpus, "HISTORY_S", 6.0)


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
    async with console(tmp_path) as platform:
        await page.goto(f"{platform.url}/jobs")
        await page.get_by_role("navigation", name="Main").get_by_role("link", name="GPUs").click()
        await expect(page.locator("h1")).to_have_text("GPUs")
        busy, idle = page.locator(f'tr[data-gpu="{node}/3"]'), page.locator(f'tr[data-gpu="{node}/4"]')
        await expect(busy.locator("td.compute")).to_have_text("10 %")
        await expect(idle.locator("td.compute")).to_have_text("0 %")
        await expect(busy.locator(".holders")).to_have_text("free")  # Claret names no process on a GPU

        chart = page.locator(f'figure[data-gpu="{node}/3"]')
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
            f"GPU {node} bus 3: compute 60 %, memory 45 % now, over the last 6 seconds"
        )
        assert await accessibility_problems(page) == []
        await screenshot(page, "gpus")


@dataclass
class FakePlatform(clara_pb2_grpc.ClaraServicer, jobs_pb2_grpc.JobsServicer):
    """A Clara service reporting one GPU with the processes in ``processes`` on it (operator, job id), and a
    Jobs service knowing one job, ``watched``, whose operator ``shouter`` started at ``STARTED``."""

    processes: list[tuple[str, str]] = field(default_factory=list)
    calls: int = 0

    JOB_ID = "a" * 32
    STARTED = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC

    async def Utilization(
        self, request: clara_pb2.ClaraUtilizationRequest, context: object
    ) -> AsyncIterator[clara_pb2.ClaraUtilizationResponse]:
        self.calls += 1
        metric = clara_pb2.ClaraUtilizationResponse.GpuUtilization
        gpu = metric(
            node_id="node-1",
            pcie_id=7,
            compute_utilization=0.5,
            memory_utilization=0.25,
            process_details=[
                metric.ProcessDetails(name=name, job_id=common_pb2.Identifier(value=job))
                for name, job in self.processes
            ],
        )
        yield clara_pb2.ClaraUtilizationResponse(header=ok_header(), gpu_metrics=[gpu])

    async def Status(self, request: jobs_pb2.JobsStatusRequest, context: object) -> jobs_pb2.JobsStatusResponse:
        if request.job_id.value != self.JOB_ID:
            return jobs_pb2.JobsStatusResponse(header=error_header(ErrorCode.NO_SUCH_JOB, "no such job"))
        operator = jobs_pb2.JobsStatusResponse.JobOperatorDetails(
            name="shouter", status=jobs_pb2.JOB_OPERATOR_STATUS_RUNNING, started=timestamp(self.STARTED)
        )
        return jobs_pb2.JobsStatusResponse(
            header=ok_header(),
            job_id=common_pb2.Identifier(value=self.JOB_ID),
            name="watched",
            state=jobs_pb2.JOB_STATE_RUNNING,
            operator_details=[operator],
        )


@pytest.fixture
async def fake_platform() -> AsyncIterator[tuple[FakePlatform, str]]:
    fake = FakePlatform()
    server = grpc.aio.server()
    clara_pb2_grpc.add_ClaraServicer_to_server(fake, server)  # type: ignore[no-untyped-call]
    jobs_pb2_grpc.add_JobsServicer_to_server(fake, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


async def test_the_gpus_page_names_the_operator_holding_a_gpu_and_samples_only_while_wanted(
    tmp_path: Path, page: Page, fake_platform: tuple[FakePlatform, str]
) -> None:
    fake, address = fake_platform
    fake.processes = [("shouter", FakePlatform.JOB_ID), ("triton", "services")]
    port = free_port()
    served = Console(make_settings(tmp_path, console_port=port, console_platform=address))
    await served.start()
    try:
        await asyncio.sleep(3 * EVERY_S)
        assert fake.calls == 0  # nobody looked at a GPU page yet: nothing sampled

        await page.goto(f"http://127.0.0.1:{port}/gpus")
        holders = page.locator('tr[data-gpu="node-1/7"] .holders')
        shouter = holders.locator('[data-holder="shouter"]')
        await expect(shouter).to_have_text("operator shouter of job watched since 2026-01-01 00:00:00")
        assert await shouter.get_by_role("link", name="watched").get_attribute("href") == f"/jobs/{'a' * 32}"
        await expect(holders.locator('[data-holder="triton"]')).to_have_text("operator triton of services")

        fake.processes = []  # the job ended: the GPU is free, without a reload
        await expect(holders).to_have_text("free")
    finally:
        await served.stop()
    stopped_at = fake.calls
    assert stopped_at >= 2
    await asyncio.sleep(3 * EVERY_S)
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
