"""A real headless Chromium (Debian's) driven by Playwright, and the mapping API served by an
in-process uvicorn for it to browse; screenshots go to .local/artifacts/console/."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from playwright.async_api import BrowserContext, ConsoleMessage, Page, async_playwright
from sqlalchemy.ext.asyncio import AsyncEngine

from crmsync.common.settings import CommonSettings
from crmsync.mapping_api.bootstrap import bootstrap
from tests.support.mapping_api import api_settings
from tests.support.processes import REPO, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
ARTIFACTS = REPO / ".local" / "artifacts" / "console"
DESKTOP = {"width": 1280, "height": 800}
NARROW = {"width": 420, "height": 860}
EXPECTED_STATUS_LOG = "Failed to load resource: the server responded with a status of 4"


@contextlib.asynccontextmanager
async def served_api(settings: CommonSettings, *, engine: AsyncEngine) -> AsyncIterator[str]:
    """Serves the mapping API (console included) on a free loopback port; yields its base URL."""
    app = bootstrap(api_settings(settings), engine=engine)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def browser(base_url: str, *, viewport: dict[str, int] = DESKTOP) -> AsyncIterator[BrowserContext]:
    """Yields a fresh browser context (its own user-data dir) of Debian's headless Chromium."""
    async with async_playwright() as playwright:
        with tempfile.TemporaryDirectory(prefix="crmsync-chromium-") as profile:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=list(CHROMIUM_ARGS),
                base_url=base_url,
                viewport=viewport,
            )
            context.set_default_timeout(20_000)
            errors: list[str] = []
            for page in context.pages:
                _watch(page, errors)
            context.on("page", lambda page: _watch(page, errors))
            try:
                yield context
            finally:
                await context.close()
            assert not errors, f"the pages reported errors: {errors}"


def _watch(page: Page, errors: list[str]) -> None:
    """Collects a page's script errors and refusals (CSP among them) into `errors`."""

    def console(message: ConsoleMessage) -> None:
        # A 4xx answer the test provokes (a refused save is 422) is logged too; it is no fault of the page.
        if message.type == "error" and not message.text.startswith(EXPECTED_STATUS_LOG):
            errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))


async def sign_in(page: Page, key: str) -> None:
    """Signs in through the form, as a person would (keyboard only)."""
    await page.goto("/console/")
    await page.get_by_label("API key").fill(key)
    await page.keyboard.press("Enter")
    # The sign-in page's own URL names the mapping (?next=/console/mapping): wait for the path.
    await page.wait_for_url(lambda url: urlsplit(url).path == "/console/mapping")


async def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Saves the page as ARTIFACTS/name.png; returns the path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path
