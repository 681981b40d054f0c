"""A job waiting for a signal on its workflow's page in a real headless Chromium: it reads
``waiting`` live, with its own icon and word, and succeeds once the signal is sent (the
fixtures are ``test_ui.py``'s)."""

from __future__ import annotations

from playwright.async_api import Page, expect

from sdk.client import Client
from tests.integration.test_ui import browser, page, stack  # noqa: F401  (fixtures)
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
