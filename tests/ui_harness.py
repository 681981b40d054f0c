"""A real headless Chromium (Debian's ``chromium``, driven by Playwright; never a downloaded
browser) against the pages a real gateway serves, with the engine, the projector and a worker.

Screenshots of every page go to ``tests/artifacts/ui/`` (git-ignored): look at them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS
from playwright.async_api import Browser, Page, async_playwright, expect

from events.store import EventStore
from gateway.serve import HttpGateway
from gateway.settings import GatewaySettings
from projections.projector import Projector
from sdk.worker import Worker
from tests.gateway_harness import running_engine, running_gateway
from tests.jobs_harness import fast_config

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "ui"
# What a page shows may take a while on a loaded 2-core machine: expect() waits up to 20 s (its
# default is 5 s), as page actions do (new_page).
expect.set_options(timeout=20_000)
LAPTOP = {"width": 1366, "height": 768}
# Headless flags for this machine: no sandbox as root, and nothing that calls out to the network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
INSTALL_HINT = (
    "the browser tests need Debian's chromium: `apt-get install -y chromium` "
    "(`make browser` does it as root; .ci/run does it before `make test`)"
)


def chromium_path() -> str:
    """The system Chromium, or a failure that says how to install it (never a skip)."""
    found = os.environ.get("JETWORK_CHROMIUM") or shutil.which("chromium")
    if found is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return found


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Stack:
    url: str
    http: httpx.AsyncClient
    nc: NATS
    store: EventStore
    gateway: HttpGateway
    work_dir: Path

    async def start(self, workflow: dict[str, Any], **body: Any) -> str:
        answer = await self.http.post("/api/workflows", json={"workflow": workflow, **body})
        assert answer.status_code == 201, answer.text
        workflow_id: str = answer.json()["workflow_id"]
        return workflow_id

    async def status(self, workflow_id: str) -> dict[str, Any]:
        answer = await self.http.get(f"/api/workflows/{workflow_id}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def gate(self, name: str) -> str:
        """A shell command that waits until ``release(name)``: a job the test ends when it wants."""
        return f'while [ ! -e "{self.work_dir / name}" ]; do sleep 0.05; done'

    def release(self, name: str) -> None:
        (self.work_dir / name).touch()


@contextlib.asynccontextmanager
async def running_stack(
    nc: NATS,
    nats_url: str,
    work_dir: Path,
    *,
    worker_slots: int = 4,
    settings: GatewaySettings | None = None,
    token: str | None = None,
) -> AsyncIterator[Stack]:
    """``token``: what the test's own HTTP client sends (with ``settings`` that hold tokens)."""
    projector = Projector(nc)
    await projector.start()
    worker = Worker(
        fast_config(
            nats_url,
            worker_id="w-ui",
            labels=frozenset({"linux"}),
            max_concurrent_jobs=worker_slots,
            shutdown_grace=1.0,
        )
    )
    try:
        async with running_engine(nc), running_gateway(nats_url, settings) as gateway:
            await worker.start()
            headers = {"Authorization": f"Bearer {token}"} if token else None
            try:
                async with httpx.AsyncClient(
                    base_url=gateway.url, timeout=30, headers=headers
                ) as http:
                    yield Stack(gateway.url, http, nc, EventStore(nc), gateway, work_dir)
            finally:
                await worker.stop()
    finally:
        await projector.stop()


async def new_page(browser: Browser) -> Page:
    context = await browser.new_context(viewport=LAPTOP)  # type: ignore[arg-type]
    page = await context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    return page


def page_errors(page: Page) -> list[str]:
    """Script errors and console errors the page reported (a 4xx the test caused is expected)."""
    errors: list[str] = page.errors  # type: ignore[attr-defined]
    return [e for e in errors if "status of 4" not in e]


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path
