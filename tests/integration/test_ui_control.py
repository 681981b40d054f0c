"""A workflow's page in a real headless Chromium: Pause, Resume and Retry failed jobs, with the
status, the reason and the jobs changing live, and Restart going to the new run (the fixtures are
``test_ui.py``'s)."""

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


async def test_restart_from_the_page_goes_to_the_new_run(
    stack: Stack,  # noqa: F811
    page: Page,  # noqa: F811
) -> None:
    wf = await stack.start({"name": "once", "jobs": {"only": {"run": "true", "labels": ["linux"]}}})
    await page.goto(f"{stack.url}/workflows/{wf}")
    await expect(page.locator(".wf-title .status")).to_contain_text("succeeded")
    await page.get_by_role("button", name="Restart as a new run").click()
    await expect(page).not_to_have_url(f"{stack.url}/workflows/{wf}")
    new = page.url.rsplit("/", 1)[-1]
    assert new.startswith("wf-") and new != wf
    await expect(page.locator(".wf-title .mono")).to_have_text(new)
    await expect(page.locator(".wf-title .status")).to_contain_text("succeeded")
    assert (await stack.status(new))["restarted_from"] == wf
    assert (await stack.status(wf))["restarted_as"] == new
    assert page_errors(page) == []
