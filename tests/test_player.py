"""The player in a real browser: Debian's Chromium driven by Playwright against a stack of its own.

A person's path: the catalogue, one more page of it, a drama, an episode that plays. On each page
the waterfall of the request that built it must show that request's spans, at least one
``queue wait`` among them, and per-category totals that add up to the trace's duration. Then the
errors a person meets: a drama that does not exist, a stopped worker (503), the API down.
Screenshots of the pages go to ``artefacts/player/`` (kept by CI as test artefacts).

No browser is downloaded: Playwright's driver comes with its PyPI wheel and launches
``/usr/bin/chromium`` (Debian's package, which decodes H.264 and AAC through MSE).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, Response, async_playwright, expect

from loadtest.devstack.config import WEB_ROOT
from loadtest.devstack.stack import Stack
from tests.conftest import ROOT, StackConfigFactory, free_port

pytestmark = pytest.mark.timeout(180)

ARTEFACTS = ROOT / "artefacts" / "player"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
WAIT_MS = 30_000  # a loaded CI machine: spans are exported every 0.1 s, pages poll every 0.4 s


def chromium() -> str:
    """Debian's chromium; on GitHub's Ubuntu runners (whose chromium is a snap) their Chrome."""
    found = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    found = found or shutil.which("google-chrome")
    # Not a skip: .ci/run installs Debian's chromium.
    assert found is not None, "the browser test needs Debian's chromium (apt-get install chromium)"
    return found


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def waterfall(page: Page, after: str | None = None) -> str:
    """Wait for the page's waterfall to show a whole trace (a new one if ``after``), check it,
    and return its trace id."""
    trace_id = page.get_by_test_id("trace-id")
    if after is not None:
        await expect(trace_id).not_to_have_text(after, timeout=WAIT_MS)
    await expect(page.locator("section.waterfall")).to_have_attribute(
        "data-state", "ok", timeout=WAIT_MS
    )
    # Server-Timing figures are on the page too (shown before the spans arrived).
    assert await page.get_by_test_id("server-timing").count() >= 4
    rows = page.get_by_test_id("span-row")
    assert await rows.count() >= 8  # SERVER, db, and per RPC call, send, queue wait, process...
    assert await page.locator('[data-testid=span-row][data-category="queue_wait"]').count() >= 1
    assert await page.locator('[data-testid=span-row][data-critical="true"]').count() >= 3
    duration = float(await page.get_by_test_id("trace-duration").get_attribute("data-ms") or "nan")
    totals = await page.get_by_test_id("category-total").evaluate_all(
        "rows => rows.map(row => Number(row.dataset.ms))"
    )
    assert duration > 0
    assert abs(sum(totals) - duration) <= 1.0, (totals, duration)
    return await trace_id.inner_text()


async def screenshot(page: Page, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


async def test_browse_page_open_play_and_see_each_requests_trace(
    stack_config: StackConfigFactory, browser: Browser
) -> None:
    assert (WEB_ROOT / "index.html").is_file(), "build the player first: make web"
    env = {"OTEL_TRACES_SAMPLER": "always_on", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    config = stack_config(
        sink_port=free_port(), web_port=free_port(), media_dramas=1, seed_dramas=20, env=env
    )
    async with Stack(config) as stack:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        segments: list[Response] = []
        page.on(
            "response",
            lambda r: segments.append(r) if r.url.split("?")[0].endswith(".ts") else None,
        )
        await page.goto(f"http://127.0.0.1:{config.web_port}/")

        cards = page.get_by_test_id("drama-card")
        await expect(cards).to_have_count(8, timeout=WAIT_MS)
        first_trace = await waterfall(page)
        await screenshot(page, "catalogue")

        await page.get_by_role("button", name="More dramas").click()
        await expect(cards).to_have_count(16, timeout=WAIT_MS)
        await waterfall(page, after=first_trace)

        title = await cards.first.get_by_role("heading").inner_text()
        await cards.first.get_by_role("link").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text(title, timeout=WAIT_MS)
        await expect(page.locator(".synopsis")).not_to_be_empty()
        assert await page.get_by_test_id("episode").count() > 1
        await waterfall(page)
        await screenshot(page, "drama")

        await page.get_by_test_id("episode").first.get_by_role("link").click()
        await page.wait_for_function(
            "document.querySelector('video')?.currentTime > 2", timeout=WAIT_MS
        )
        await waterfall(page)
        # Seeking works: back to the start, and playing on from there.
        await page.evaluate("document.querySelector('video').currentTime = 0.5")
        await page.wait_for_function(
            "(v => v.currentTime > 0.5 && v.currentTime < 2.5 && !v.seeking)"
            "(document.querySelector('video'))",
            timeout=WAIT_MS,
        )
        await screenshot(page, "episode")
        assert len(segments) >= 2
        for response in segments:
            assert response.status == 200, response.url
            assert "X-Amz-Signature=" in urlsplit(response.url).query

        # Errors a person can understand, each with its way out.
        await page.goto(f"http://127.0.0.1:{config.web_port}/#/dramas/999")
        alert = page.get_by_role("alert")
        await expect(alert).to_contain_text("Not found", timeout=WAIT_MS)
        await expect(alert).to_contain_text("no drama with id 999")
        assert await alert.get_by_role("button", name="Retry").count() == 0

        # A stopped worker: 503 if its queue went with it, else 504 once RPC_TIMEOUT_MS is up.
        await stack.stop_process("stream")
        await page.goto(f"http://127.0.0.1:{config.web_port}/#/dramas/2")
        stopped = re.compile("A service is unavailable|The backend took too long")
        await expect(alert).to_contain_text(stopped, timeout=WAIT_MS)
        await expect(alert.get_by_role("button", name="Retry")).to_be_visible()
        await screenshot(page, "unavailable")

        await stack.stop_process("drama")
        await alert.get_by_role("button", name="Retry").click()
        await expect(alert).to_contain_text("The API is not reachable", timeout=WAIT_MS)
        await page.close()


def test_screenshots_are_where_the_readme_says() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/images/player-drama.png" in readme
    assert (ROOT / "docs" / "images" / "player-drama.png").is_file()
