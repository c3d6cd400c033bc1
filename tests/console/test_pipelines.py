"""The console's pipeline pages in a real browser against a real platform: the list links to a pipeline,
whose page shows its definition highlighted and its DAG, and creates a job from uploaded files that runs
and leaves its output to download; the form wants its CSRF token; a job created elsewhere starts from its
page; the pages have no critical accessibility findings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from claret.records import JobDagNode, PipelineNode
from services.console import dag
from tests.console.browser import accessibility_problems, browser_page, screenshot
from tests.console.test_console import CHAIN, console


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    async with browser_page(tmp_path) as opened:
        yield opened


async def test_a_job_made_from_the_pipeline_page_runs_on_the_uploaded_file(tmp_path: Path, page: Page) -> None:
    async with console(tmp_path) as platform:
        pipeline_id = (await platform.client.create_pipeline([("chain.yaml", CHAIN)])).pipeline_id
        await page.goto(f"{platform.url}/pipelines")
        await expect(page.locator("h1")).to_have_text("Pipelines")
        await page.locator(f'tr[data-pipeline="{pipeline_id}"]').get_by_role("link", name="chain").click()

        await expect(page.locator("h1")).to_have_text("Pipeline chain")
        definition = page.locator(".highlight")
        await expect(definition).to_contain_text("operators:")
        assert await definition.locator("span").count() > 10  # highlighted: tokens in classed spans
        await expect(page.locator("figure.dag svg g.node")).to_have_count(2)
        await expect(page.locator("svg #op-copier")).to_have_count(1)
        await expect(page.locator("svg #op-shouter")).to_have_count(1)
        await screenshot(page, "pipeline")

        sent = tmp_path / "b.txt"
        sent.write_bytes(b"made in the browser\n")
        await page.get_by_label("Job name").fill("uploaded")
        await page.get_by_label("Priority").select_option("HIGHER")
        await page.get_by_label("Input files").set_input_files(sent)
        await page.get_by_role("button", name="Create and start job").click()

        await expect(page.locator("h1")).to_have_text("Job uploaded")
        await expect(page.locator("#job-status")).to_have_text("HEALTHY", timeout=30_000)
        await expect(page.locator("g.node.COMPLETED")).to_have_count(2, timeout=30_000)
        job_id = page.url.rsplit("/", 1)[-1]
        job = await platform.client.job_status(job_id)
        assert (job.pipeline_id, job.priority.name) == (pipeline_id, "HIGHER")

        async with page.expect_download() as waiting:
            await page.get_by_role("link", name="/operators/shouter/b.txt.upper").click()
        download = await waiting.value
        assert Path(await download.path()).read_bytes() == b"MADE IN THE BROWSER\n"

        await page.goto(f"{platform.url}/pipelines/{pipeline_id}")
        await expect(page.locator(f'tr[data-job="{job_id}"]')).to_be_visible()  # the pipeline lists its job


async def test_creating_a_job_wants_the_csrf_token_and_a_file_name_the_platform_takes(
    tmp_path: Path, page: Page
) -> None:
    async with console(tmp_path) as platform:
        pipeline_id = (await platform.client.create_pipeline([("chain.yaml", CHAIN)])).pipeline_id
        await page.goto(f"{platform.url}/pipelines/{pipeline_id}")  # the browser has its CSRF cookie
        url = f"{platform.url}/pipelines/{pipeline_id}/jobs"
        files = {"name": "forged", "files": {"name": "a.txt", "mimeType": "text/plain", "buffer": b"x"}}
        assert (await page.request.post(url, multipart=files)).status == 403
        assert (await page.request.post(url, multipart={**files, "csrf": "guess"})).status == 403
        assert await platform.client.list_jobs(pipeline_ids=[pipeline_id]) == []

        missing = await page.request.get(f"{platform.url}/pipelines/{'0' * 32}")
        assert missing.status == 404

        await page.get_by_label("Job name").fill("refused")
        await page.get_by_label("Input files").set_input_files({"name": "..", "mimeType": "text/plain", "buffer": b"x"})
        await page.get_by_role("button", name="Create and start job").click()
        await expect(page.get_by_role("alert")).to_contain_text("The platform refused the job")
        await expect(page.get_by_label("Job name")).to_have_value("refused")  # the form keeps what was typed


async def test_start_from_the_job_page_runs_a_job_created_elsewhere(tmp_path: Path, page: Page) -> None:
    async with console(tmp_path) as platform:
        pipeline_id = (await platform.client.create_pipeline([("chain.yaml", CHAIN)])).pipeline_id
        created = await platform.client.create_job(pipeline_id, "waiting")
        await platform.client.upload(created.payload_id, "a.txt", b"started by hand\n")
        await page.goto(f"{platform.url}/jobs/{created.job_id}")
        await expect(page.locator("#job-state")).to_have_text("PENDING")
        await page.get_by_role("button", name="Start job").click()
        await expect(page.locator("#job-status")).to_have_text("HEALTHY", timeout=30_000)
        await expect(page.locator("g.node.COMPLETED")).to_have_count(2, timeout=30_000)
        await expect(page.get_by_role("button", name="Start job")).to_have_count(0)


async def test_the_pipeline_pages_have_no_critical_accessibility_findings(tmp_path: Path, page: Page) -> None:
    async with console(tmp_path) as platform:
        pipeline_id = (await platform.client.create_pipeline([("chain.yaml", CHAIN)])).pipeline_id
        for path in ("/pipelines", f"/pipelines/{pipeline_id}"):
            await page.goto(f"{platform.url}{path}")
            assert await accessibility_problems(page) == [], path


def test_a_pipeline_dag_becomes_each_operator_once_with_its_upstreams() -> None:
    joined = PipelineNode("join")
    roots = [PipelineNode("a", (PipelineNode("b", (joined,)), joined)), PipelineNode("c", (joined,))]
    assert dag.pipeline_nodes(roots) == [
        JobDagNode("a"),
        JobDagNode("b", ("a",)),
        JobDagNode("join", ("b", "a", "c")),
        JobDagNode("c"),
    ]
    source = dag.dot_source(dag.pipeline_nodes(roots))
    assert '"a" -> "join";' in source and "fillcolor" in source and "UNKNOWN" not in source
