"""The browser harness itself, without the console: a real chromium on small pages that aiohttp serves here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Page

from tests.console.browser import accessibility_problems, browser_page, screenshot
from tests.helpers import free_port

GOOD = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Harness</title></head>
<body>
<main>
  <h1>Pipelines</h1>
  <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="A dot">
  <p id="state">idle</p>
  <button type="button" onclick="document.getElementById('state').textContent = 'running'">Start</button>
  <label for="name">Name</label> <input id="name" type="text">
</main>
</body>
</html>
"""

BAD = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Bad</title></head>
<body>
<main>
  <h1>Bad</h1>
  <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">
  <button type="button"></button>
</main>
</body>
</html>
"""


@pytest.fixture
async def site() -> AsyncIterator[str]:
    """GOOD at /good and BAD at /bad, served by aiohttp on a free port: the base URL."""
    app = web.Application()
    app.router.add_get("/good", _serve(GOOD))
    app.router.add_get("/bad", _serve(BAD))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _serve(text: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=text, content_type="text/html")

    return handler


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    async with browser_page(tmp_path) as page:
        yield page


async def test_reads_clicks_and_screenshots(
    site: str, page: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLARET_SCREENSHOTS", raising=False)
    await page.goto(f"{site}/good")
    assert await page.title() == "Harness"
    assert await page.get_by_role("heading", level=1).text_content() == "Pipelines"
    assert await page.locator("#state").text_content() == "idle"

    await page.get_by_role("button", name="Start").click()

    assert await page.locator("#state").text_content() == "running"
    shot = await screenshot(page, "harness")
    assert shot == tmp_path / "harness.png"
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert shot.stat().st_size > 1000


async def test_accessibility_finds_the_known_problems(site: str, page: Page) -> None:
    await page.goto(f"{site}/bad")
    problems = await accessibility_problems(page)
    assert any(problem.startswith("image-alt (critical)") for problem in problems), problems
    assert any(problem.startswith("button-name (critical)") for problem in problems), problems
    assert len(problems) == 2, problems


async def test_accessibility_passes_a_good_page(site: str, page: Page) -> None:
    await page.goto(f"{site}/good")
    assert await accessibility_problems(page, impacts=("critical", "serious", "moderate", "minor")) == []
