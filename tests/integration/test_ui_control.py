"""A workflow's page in a real headless Chromium: Pause, Resume and Retry failed jobs, with the
status, the reason and the jobs changing live (the fixtures are ``test_ui.py``'s)."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.integration.test_ui import browser, page, stack  # noqa: F401  (fixtures)
from tests.ui_harness import Stack, page_errors, screenshot


async def test_pause_resume_and_retry_from_the_page(
    stack: Stack,  # noqa: F811
    page: Page,  # noqa: F811
) -> None:
    wf = await stack.start(
        {
            "name": "paced",
            "jobs": {
                "first": {"run": stack.gate("first"), "labels": ["linux"]},
                "then": {"needs": ["first"], "run": stack.gate("then"), "labels": ["linux"]},
            },
        }
    )
    await page.goto(f"{stack.url}/workflows/{wf}")
    first, then = page.locator('.node[data-job="first"]'), page.locator('.node[data-job="then"]')
    await expect(first).to_have_attribute("data-status", "running")
    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator(".wf-title .status")).to_contain_text("paused")
    await expect(page.locator(".reason")).to_contain_text("paused by web UI")
    stack.release("first")  # its result is recorded while paused
    await expect(first).to_have_attribute("data-status", "succeeded")
    await screenshot(page, "workflow-paused")
    await page.get_by_role("button", name="Resume").click()
    await expect(page.locator(".wf-title .status")).to_contain_text("running")
    await expect(then).to_have_attribute("data-status", "running")
    history = [event["type"] for event in (await stack.http.get(
        f"/api/workflows/{wf}/history")).json()["events"]]  # fmt: skip
    assert history.index("WorkflowResumed") < history.index("JobQueued", 2)
    await page.get_by_role("button", name="Cancel workflow…").click()
    await page.get_by_role("button", name="Cancel it").click()
    await expect(page.locator(".wf-title .status")).to_contain_text("cancelled")
    await page.get_by_role("button", name="Retry failed jobs").click()
    await expect(page.locator(".wf-title .status")).to_contain_text("running")
    stack.release("then")
    await expect(then).to_have_attribute("data-status", "succeeded")
    await expect(page.locator(".wf-title .status")).to_contain_text("succeeded")
    assert (await stack.status(wf))["jobs"]["then"]["attempts"] == 2
    assert page_errors(page) == []
