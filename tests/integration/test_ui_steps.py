"""A workflow's page in a real headless Chromium with steps that need no worker, an n-of-m join
and the workflow's result: the sleeping job changes live, the quorum's edges are drawn, and the
result appears when the workflow succeeds (the fixtures are ``test_ui.py``'s)."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.integration.test_ui import browser, page, stack  # noqa: F401  (fixtures)
from tests.ui_harness import Stack, page_errors, screenshot


async def test_a_sleep_a_quorum_and_the_workflow_s_result_on_its_page(
    stack: Stack,  # noqa: F811
    page: Page,  # noqa: F811
) -> None:
    wf = await stack.start(
        {
            "name": "steps",
            "outputs": {"tag": "${{ needs.meta.outputs.tag }}"},
            "jobs": {
                "meta": {"set": {"tag": "v-from-set"}},
                "gate": {"needs": ["meta"], "run": stack.gate("gate"), "labels": ["linux"]},
                "nap": {"needs": ["gate"], "sleep": "3s"},
                "a": {"needs": ["nap"], "run": "true", "labels": ["linux"]},
                "b": {"needs": ["nap"], "run": "true", "labels": ["linux"]},
                "c": {"needs": ["nap"], "run": "true", "labels": ["linux"]},
                "publish": {
                    "needs_at_least": {"count": 2, "of": ["a", "b", "c"]},
                    "run": "true",
                    "labels": ["linux"],
                },
            },
        }
    )
    await page.goto(f"{stack.url}/workflows/{wf}")
    await expect(page.locator('.node[data-job="gate"]')).to_have_attribute("data-status", "running")
    await expect(page.locator('.node[data-job="meta"]')).to_have_attribute(
        "data-status", "succeeded"
    )
    assert await page.locator(".dag path.edge.any").count() == 3  # the quorum, dashed
    await expect(page.locator(".overview")).not_to_contain_text("Result")
    stack.release("gate")
    await expect(page.locator('.node[data-job="nap"]')).to_have_attribute("data-status", "queued")
    await expect(page.locator(".wf-title .status")).to_contain_text("succeeded")
    await expect(page.locator(".overview")).to_contain_text("Result")
    await expect(page.locator(".overview")).to_contain_text("v-from-set")
    await screenshot(page, "workflow-steps")
    await page.reload()
    await expect(page.locator(".overview")).to_contain_text("Result")
    assert (await stack.status(wf))["outputs"] == {"tag": "v-from-set"}
    assert page_errors(page) == []
