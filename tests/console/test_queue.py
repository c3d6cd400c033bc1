"""The queue, services and GPU pages in a real browser against a real platform that declares one GPU without a
driver (``gpus=("0",)``: scheduling only, as tests/test_scheduling_api.py): jobs holding and waiting for the
GPU, seen live on the queue page and in the GPU page's ledger; a pipeline service on the services page."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from claret.client import PlatformClient
from claret.records import Priority, QueueSnapshot
from services.console import queue as console_queue
from tests.console.browser import accessibility_problems, browser_page, screenshot
from tests.console.test_console import console
from tests.test_scheduling_api import CHAIN, GPU_SLEEPER

WITH_SERVICE = """api-version: 0.4.0
name: served
operators:
- name: user
  container: {image: busybox, command: ["sh", "-c", "sleep 30"]}
  services:
  - name: keeper
    container: {image: busybox, command: ["sh", "-c", "exec sleep 600"]}
    requests: {gpu: 1}
"""


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    async with browser_page(tmp_path) as opened:
        yield opened


async def snapshot_until(client: PlatformClient, ready: Callable[[QueueSnapshot], bool]) -> QueueSnapshot:
    """The queue once ``ready`` holds of it (20 s at most)."""
    deadline = time.monotonic() + 20
    while not ready(snapshot := await client.queue_snapshot()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return snapshot


async def started(client: PlatformClient, pipeline_id: str, name: str, priority: Priority = Priority.NORMAL) -> str:
    job_id = (await client.create_job(pipeline_id, name, priority)).job_id
    await client.start_job(job_id)
    return job_id


@pytest.mark.usefixtures("fast_refresh")
async def test_the_queue_and_gpu_pages_follow_the_gpu_from_one_job_to_the_next_live(
    tmp_path: Path, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console_queue, "QUEUE_SHOWN", 1)  # two wait: one is listed, "1 more waiting"
    async with console(tmp_path, gpus=("0",), cpus=4) as platform:
        client = platform.client
        gpu_pipeline = (await client.create_pipeline([("p.yaml", GPU_SLEEPER)])).pipeline_id
        holder = await started(client, gpu_pipeline, "holder")
        await snapshot_until(client, lambda s: any(grant.job_id == holder for grant in s.held))
        later = await started(client, gpu_pipeline, "later")
        waiter = await started(client, gpu_pipeline, "waiter", Priority.HIGHER)  # started last, starts first
        chain = await started(client, (await client.create_pipeline([("c.yaml", CHAIN)])).pipeline_id, "chain")
        await snapshot_until(client, lambda s: s.waiting_total == 2 and bool(s.blocked))

        await page.goto(f"{platform.url}/jobs")
        await page.get_by_role("navigation", name="Main").get_by_role("link", name="Queue").click()
        await expect(page.locator("h1")).to_have_text("Queue")
        waiting = page.locator("#waiting tbody tr")
        await expect(waiting).to_have_count(1)
        await expect(waiting.locator(".reason")).to_have_text("waits for room: needs 1 GPU (0 free)")
        assert await waiting.get_attribute("data-job") == waiter
        assert await waiting.get_by_role("link", name="waiter").get_attribute("href") == f"/jobs/{waiter}"
        await expect(waiting.locator("td").nth(3)).to_have_text("higher")
        await expect(page.locator("#more-waiting")).to_have_text("1 more waiting")
        blocked = page.locator(f'#blocked tr[data-job="{chain}"]')
        await expect(blocked).to_contain_text("chain")
        await expect(blocked.locator(".upstream")).to_have_text("first")
        await expect(page.locator(f'#held tr[data-job="{holder}"] .gpus')).to_have_text("0")
        node = page.locator('#nodes tr[data-node=""]')
        await expect(node.locator(".gpus")).to_have_text("0")
        await expect(node.locator(".gpus-free")).to_have_text("none")

        gpus = await page.context.new_page()
        await gpus.goto(f"{platform.url}/gpus")
        gpu = gpus.locator('tr[data-gpu="0"]')
        await expect(gpu.locator(".holders")).to_contain_text("operator op of job holder since ")
        assert await gpu.get_by_role("link", name="holder").get_attribute("href") == f"/jobs/{holder}"
        await expect(gpu.locator(".unmeasured")).to_have_text("no utilization: not seen by NVML")  # no driver

        assert await accessibility_problems(page) == []
        await screenshot(page, "queue")

        await client.cancel_job(later)
        await expect(page.locator("#more-waiting")).to_have_count(0)  # no reload: the page is live
        await client.cancel_job(holder)
        await expect(waiting).to_have_text("No operator waits to start.")  # the waiter started
        await expect(page.locator(f'#held tr[data-job="{waiter}"] .gpus')).to_have_text("0")
        await expect(gpu.locator(".holders")).to_contain_text("operator op of job waiter since ")
        await client.cancel_job(chain)
        await expect(page.locator("#blocked tbody tr")).to_have_text("No operator waits for upstream operators.")


@pytest.mark.skipif(os.geteuid() != 0, reason="sandboxed services need the jobs service to run as root")
@pytest.mark.usefixtures("fast_refresh")
async def test_the_services_page_shows_a_pipeline_service_and_its_gpu_live(tmp_path: Path, page: Page) -> None:
    async with console(tmp_path, gpus=("0",)) as platform:
        client = platform.client
        try:
            await page.goto(f"{platform.url}/jobs")
            await page.get_by_role("navigation", name="Main").get_by_role("link", name="Services").click()
            await expect(page.locator("h1")).to_have_text("Services")
            rows = page.locator("#services-live tbody tr")
            await expect(rows).to_have_text("No pipeline services run.")

            pipeline_id = (await client.create_pipeline([("s.yaml", WITH_SERVICE)])).pipeline_id
            job_id = await started(client, pipeline_id, "served")
            await expect(rows.locator("td").first).to_have_text("keeper", timeout=20_000)  # no reload
            await expect(rows.locator(".state")).to_have_text("ready")
            await expect(rows.locator(".users")).to_have_text("1")
            await expect(rows.locator(".gpus")).to_have_text("0")
            await expect(rows).to_contain_text("busybox")
            assert await accessibility_problems(page) == []

            await page.goto(f"{platform.url}/queue")
            service = (await client.queue_snapshot()).services[0]
            held = page.locator(f'#held tr[data-operator="{service.id}"]')
            await expect(held.locator("td").nth(0)).to_have_text("pipeline service")
            await expect(held.locator("td").nth(1)).to_have_text("keeper")  # by name, its grant names its id
            await expect(held.locator(".gpus")).to_have_text("0")
            await page.goto(f"{platform.url}/gpus")
            await expect(page.locator('tr[data-gpu="0"] .holders')).to_contain_text("pipeline service keeper since ")

            await page.goto(f"{platform.url}/services")
            await client.cancel_job(job_id)
            await expect(rows.locator(".users")).to_have_text("0")  # idle, still running
            await client.stop_platform()  # Clara.Stop stops the services
            await expect(rows).to_have_text("No pipeline services run.")
        finally:
            await client.stop_platform()
