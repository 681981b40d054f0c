"""Jobs that wait on no worker, on their workflow's page in a real headless Chromium: one waiting
for a signal reads ``waiting`` live and succeeds once the signal is sent; one whose handler
returned ``InProgress`` reads ``parked`` live, then succeeds when it is looked at again (the
fixtures are ``test_ui.py``'s)."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page, expect

from sdk import InProgress
from sdk.client import Client
from sdk.worker import Worker
from sdk.worker.job_context import JobContext
from tests.integration.test_ui import browser, page, stack  # noqa: F401  (fixtures)
from tests.jobs_harness import fast_config
from tests.ui_harness import Stack, page_errors, screenshot


async def test_a_job_waiting_for_a_signal_reads_waiting_then_succeeds_when_signalled(
    stack: Stack,  # noqa: F811
    page: Page,  # noqa: F811
) -> None:
    wf = await stack.start(
        {
            "name": "approval",
            "jobs": {
                "gate": {"run": stack.gate("gate"), "labels": ["linux"]},
                "approve": {"needs": ["gate"], "wait_for": {"signal": "go", "timeout": "1h"}},
                "ship": {"needs": ["approve"], "run": "true", "labels": ["linux"]},
            },
        }
    )
    await page.goto(f"{stack.url}/workflows/{wf}")
    node = page.locator('.node[data-job="approve"]')
    await expect(page.locator('.node[data-job="gate"]')).to_have_attribute("data-status", "running")
    await expect(node).to_have_attribute("data-status", "pending")
    stack.release("gate")  # the wait starts while the page is open: folded live from its event
    await expect(node).to_have_attribute("data-status", "waiting")
    await expect(node).to_contain_text("waiting")
    await screenshot(page, "workflow-waiting")
    await Client(stack.nc).signal(wf, "go", {"by": "ann"})
    await expect(node).to_have_attribute("data-status", "succeeded")
    await expect(page.locator(".wf-title .status")).to_contain_text("succeeded")
    assert page_errors(page) == []


async def test_a_parked_job_reads_parked_live_then_succeeds(
    stack: Stack,  # noqa: F811
    page: Page,  # noqa: F811
    nats_url: str,
) -> None:
    worker = Worker(fast_config(nats_url, worker_id="w-park", max_concurrent_jobs=1))

    @worker.job("remote")
    async def remote(ctx: JobContext, inputs: dict[str, Any]) -> Any:
        if ctx.poll_count == 0:
            return InProgress(callback_after="2s", outputs={"pct": "40"})
        return {"done": "yes"}

    await worker.start()
    try:
        wf = await stack.start(
            {
                "name": "parking",
                "jobs": {
                    "gate": {"run": stack.gate("gate"), "labels": ["linux"]},
                    "remote": {"needs": ["gate"], "uses": "remote"},
                },
            }
        )
        await page.goto(f"{stack.url}/workflows/{wf}")
        node = page.locator('.node[data-job="remote"]')
        await expect(node).to_have_attribute("data-status", "pending")
        stack.release("gate")  # parked while the page is open: folded live from JobParked
        await expect(node).to_have_attribute("data-status", "parked")
        await expect(node).to_have_attribute("data-status", "succeeded", timeout=20_000)
        assert page_errors(page) == []
    finally:
        await worker.stop()
