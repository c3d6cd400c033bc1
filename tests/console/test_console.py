"""The web console in a real browser (Debian's chromium, headless, through Playwright) against a real
platform: the jobs page updates live, a job's DAG turns green as its operators complete, its timeline has
a bar for each, its logs and files are there, Cancel works, nothing works without a token when tokens are
on, and the main pages have no critical accessibility findings. Screenshots of the main pages go to
docs/screenshots/ with CLARET_SCREENSHOTS=1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from claret.client import PlatformClient, Security
from tests.console.browser import accessibility_problems, browser_page, screenshot
from tests.helpers import free_port, make_settings, start_in_process

CHAIN = """api-version: 0.4.0
name: chain
operators:
- name: copier
  container:
    image: busybox
    command: ["sh", "-c", "sleep 1; cp -r /input/. /output/; echo copied $(ls /input | wc -l) files"]
  input: [{path: /input}]
  output: [{path: /output}]
- name: shouter
  container:
    image: busybox
    command: ["sh", "-c", "for f in /in/*; do tr a-z A-Z < $f > /out/$(basename $f).upper; done"]
  input: [{from: copier, path: /in}]
  output: [{path: /out}]
"""
SLEEPER = """api-version: 0.4.0
name: sleeper
operators:
- name: sleeper
  container: {image: busybox, command: ["sh", "-c", "echo asleep; sleep 60"]}
"""


@dataclass
class Console:
    url: str
    client: PlatformClient


@asynccontextmanager
async def console(tmp_path: Path, **changes: object) -> AsyncIterator[Console]:
    port = free_port()
    settings = make_settings(tmp_path, port=free_port(), console_port=port, **changes)
    server, resources = await start_in_process(settings)
    try:
        async with PlatformClient(f"127.0.0.1:{server.port}") as client:
            yield Console(f"http://127.0.0.1:{port}", client)
    finally:
        await server.stop(grace=1)
        await resources.close()


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    async with browser_page(tmp_path) as opened:
        yield opened


async def started_job(platform: Console, pipeline: str, name: str, files: dict[str, bytes]) -> str:
    pipeline_id = (await platform.client.create_pipeline([("p.yaml", pipeline)])).pipeline_id
    job = await platform.client.create_job(pipeline_id, name)
    for file_name, data in files.items():
        await platform.client.upload(job.payload_id, file_name, data)
    await platform.client.start_job(job.job_id)
    return job.job_id


async def test_a_job_appears_live_its_dag_turns_green_and_its_logs_and_files_are_there(
    tmp_path: Path, page: Page
) -> None:
    async with console(tmp_path) as platform:
        await page.goto(f"{platform.url}/jobs")
        await expect(page.locator("h1")).to_have_text("Jobs")

        job_id = await started_job(platform, CHAIN, "watched", {"a.txt": b"hello console\n"})
        row = page.locator(f'tr[data-job="{job_id}"]')
        await expect(row).to_be_visible()  # no reload: the list is live
        await screenshot(page, "jobs")
        await row.get_by_role("link", name="watched").click()

        await expect(page.locator("g.node.COMPLETED")).to_have_count(2, timeout=30_000)  # the DAG turned green
        await expect(page.locator("#job-status")).to_have_text("HEALTHY")
        await expect(page.locator('pre[data-log="copier"]')).to_contain_text("copied 1 files")
        timeline = page.locator("svg.timeline")  # a bar per operator, in DAG order, once the job ended
        await expect(timeline.locator("g.row")).to_have_count(2)
        assert await timeline.locator("g.row").evaluate_all("rows => rows.map(r => r.dataset.operator)") == [
            "copier",
            "shouter",
        ]
        await expect(timeline.locator("rect.bar.bar-COMPLETED")).to_have_count(2)
        await expect(timeline.locator("rect.running")).to_have_count(0)
        assert await accessibility_problems(page) == []
        await screenshot(page, "job")

        link = page.get_by_role("link", name="/operators/shouter/a.txt.upper")
        async with page.expect_download() as waiting:
            await link.click()
        download = await waiting.value
        assert Path(await download.path()).read_bytes() == b"HELLO CONSOLE\n"
        assert download.suggested_filename == "a.txt.upper"


async def test_cancel_from_the_job_page_stops_a_running_job(tmp_path: Path, page: Page) -> None:
    async with console(tmp_path) as platform:
        job_id = await started_job(platform, SLEEPER, "sleepy", {})
        await page.goto(f"{platform.url}/jobs/{job_id}")
        await expect(page.locator("g.node.RUNNING")).to_have_count(1, timeout=20_000)
        await page.get_by_role("button", name="Cancel job").click()
        await expect(page.locator("#job-state")).to_have_text("STOPPED", timeout=20_000)
        await expect(page.locator("#job-status")).to_have_text("CANCELED")
        assert (await platform.client.job_status(job_id)).status.name == "CANCELED"


async def test_with_tokens_on_no_page_or_action_works_without_one(tmp_path: Path, page: Page) -> None:
    async with console(tmp_path, auth_tokens=("console-secret",)) as platform:
        token_client = PlatformClient(platform.client.address, security=Security(token="console-secret"))
        async with token_client:
            job_id = await started_job(Console(platform.url, token_client), SLEEPER, "guarded", {})
            for path in ("/jobs", f"/jobs/{job_id}", "/queue", "/gpus", "/services", "/models"):
                await page.goto(f"{platform.url}{path}")
                await expect(page.locator("h1")).to_have_text("Log in")  # every page sends you to log in
            fragments = ("/jobs/rows", f"/jobs/{job_id}/live", "/queue/live", "/gpus/live", "/services/live")
            for path in (*fragments, f"/payloads/{'0' * 32}/input/x"):
                assert (await page.request.get(f"{platform.url}{path}", max_redirects=0)).status in (302, 401)
            forged = await page.request.post(f"{platform.url}/jobs/{job_id}/cancel", form={"csrf": "guess"})
            assert forged.status in (401, 403)

            await page.get_by_label("Token").fill("not-the-token")
            await page.get_by_role("button", name="Log in").click()
            await expect(page.get_by_role("alert")).to_have_text("That token is not accepted.")
            await page.get_by_label("Token").fill("console-secret")
            await page.get_by_role("button", name="Log in").click()
            await expect(page.locator(f'tr[data-job="{job_id}"]')).to_be_visible()
            assert "console-secret" not in await page.content()  # no page shows a token
            await page.goto(f"{platform.url}/jobs/{job_id}")
            await page.get_by_role("button", name="Cancel job").click()
            await expect(page.locator("#job-status")).to_have_text("CANCELED", timeout=20_000)


async def test_the_main_pages_have_no_critical_accessibility_findings(tmp_path: Path, page: Page) -> None:
    async with console(tmp_path) as platform:
        job_id = await started_job(platform, CHAIN, "checked", {"a.txt": b"x\n"})
        for path in ("/jobs", f"/jobs/{job_id}", "/queue", "/gpus", "/services", "/models", "/login"):
            await page.goto(f"{platform.url}{path}")
            assert await accessibility_problems(page) == [], path
