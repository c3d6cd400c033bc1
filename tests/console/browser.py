"""A real browser for the web console's tests: Debian's chromium, headless, driven by Playwright's async API.

Playwright never downloads a browser here (no ``playwright install``): it runs the system ``chromium`` that
``bash scripts/install`` puts on the machine. A test module typically has::

    @pytest.fixture
    async def page(tmp_path: Path) -> AsyncIterator[Page]:
        async with browser_page(tmp_path) as page:
            yield page

Each page gets a browser of its own (pytest-asyncio gives every test its own event loop, and a Playwright
connection cannot outlive its loop) and a fresh context: no cookies or storage leak from one test to the next.

Screenshots (``screenshot``) go to the ``screenshots`` folder given to ``browser_page``, the test's tmp_path,
unless ``CLARET_SCREENSHOTS=1``: then they go to docs/screenshots/, for the documentation, so a plain test run
(CI) never rewrites the committed images.

Accessibility (``accessibility_problems``) is checked with axe-core, the ``axe.min.js`` that the PyPI package
axe-playwright-python bundles: injected into the page, it runs in the browser and needs no network.
"""

from __future__ import annotations

import os
import shutil
import weakref
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

ROOT = Path(__file__).resolve().parent.parent.parent
PUBLISHED = ROOT / "docs" / "screenshots"
TIMEOUT_MS = 15_000

_screenshot_dirs: weakref.WeakKeyDictionary[Page, Path] = weakref.WeakKeyDictionary()


def chromium_path() -> str:
    """The system chromium, or a failed test saying how to install it."""
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("no chromium on this machine for the browser tests: run `bash scripts/install`")
    return path


@asynccontextmanager
async def browser_page(screenshots: Path | None = None) -> AsyncIterator[Page]:
    """A page in a fresh context of a headless chromium of its own, closed (browser and all) on exit.

    ``screenshots`` is where ``screenshot`` saves this page's images (unless ``CLARET_SCREENSHOTS=1``).
    """
    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # chromium refuses to run its sandbox as root
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=args)
        try:
            # bypass_csp: the console may forbid inline scripts, and axe is injected as one
            context = await browser.new_context(bypass_csp=True)
            context.set_default_timeout(TIMEOUT_MS)
            page = await context.new_page()
            if screenshots is not None:
                _screenshot_dirs[page] = screenshots
            yield page
        finally:
            await browser.close()


async def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as ``<name>.png``: in docs/screenshots/ with CLARET_SCREENSHOTS=1, else in its tmp dir."""
    if os.environ.get("CLARET_SCREENSHOTS") == "1":
        folder = PUBLISHED
    elif (tmp := _screenshot_dirs.get(page)) is not None:
        folder = tmp
    else:
        raise ValueError("browser_page() was given no folder for screenshots: pass it the test's tmp_path")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    await page.screenshot(path=path, full_page=True)
    return path


@cache
def axe_script() -> str:
    """axe-core as axe-playwright-python ships it (we use only its axe.min.js, not its Python API)."""
    return (resources.files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")


async def accessibility_problems(page: Page, impacts: Iterable[str] = ("critical",)) -> list[str]:
    """axe-core's violations of the given impacts on the page as it is now, one line per offending element.

    Impacts are axe's: "critical", "serious", "moderate", "minor". Empty when the page passes.
    """
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(content=axe_script())
    results: dict[str, Any] = await page.evaluate(
        "options => axe.run(document, options)", {"resultTypes": ["violations"]}
    )
    wanted = set(impacts)
    problems = []
    for violation in results["violations"]:
        if violation["impact"] not in wanted:
            continue
        for node in violation["nodes"]:
            target = " ".join(str(part) for part in node["target"])
            problems.append(f"{violation['id']} ({violation['impact']}): {violation['help']}: {target}")
    return problems
