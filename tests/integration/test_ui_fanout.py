"""Fan-out instances on a workflow's page, in a real headless Chromium (the fixtures are
``test_ui.py``'s): the fanned-out job is one node counting its instances by status, live; its
panel lists them; an instance opens in a panel of its own (item, log) and can be skipped there;
1,000 instances stay one readable node and a grid of cells."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Page, expect

from tests.integration.test_ui import browser, page, stack  # noqa: F401  (fixtures)
from tests.ui_harness import Stack, page_errors, screenshot


def matrix_flow(running: Stack) -> dict[str, Any]:
    # n=1 fails at once (the worker has 4 slots); the others wait for the gate, then print n.
    n = "${{ matrix.n }}"
    run = f'if [ "{n}" = 1 ]; then exit 3; fi; {running.gate("go")}; echo "done {n}"'
    return {
        "name": "fanned",
        "jobs": {
            "prepare": {"run": "true", "labels": ["linux"]},
            "t": {
                "needs": ["prepare"],
                "strategy": {"matrix": {"n": list(range(8))}, "fail_fast": False},
                "labels": ["linux"],
                "run": run,
            },
            "report": {"needs": ["t"], "run": "true", "labels": ["linux"]},
        },
    }


async def test_a_fanned_out_job_counts_its_instances_live_and_opens_each(
    stack: Stack,  # noqa: F811
    page: Page,  # noqa: F811
) -> None:
    wf = await stack.start(matrix_flow(stack))
    await page.goto(f"{stack.url}/workflows/{wf}")
    node = page.locator('.node[data-job="t"]')
    await expect(node).to_have_attribute("data-instances", "8")
    await expect(node).to_have_attribute("data-status", "running")
    await expect(node).to_have_attribute("aria-label", _contains("1 failed"))
    await expect(node.locator(".fan-bar .seg.st-failed")).to_have_attribute("data-count", "1")
    assert await page.locator(".node").count() == 3  # one node for the 8 instances
    await expect(node.locator(".node-detail")).to_contain_text("1/8 done · 1 failed")

    await node.click()
    panel = page.locator(".job-panel")
    instances = panel.locator(".instances")
    await expect(instances).to_contain_text("Instances (8)")
    await expect(instances.locator(".cell")).to_have_count(8)
    await expect(panel.locator(".logs")).to_have_count(0)  # each instance has its own
    await expect(instances.locator('.cell[data-job="t-1"]')).to_have_attribute(
        "data-status", "failed"
    )
    await instances.locator('button[data-status="failed"]').click()  # only the failed one
    await expect(instances.locator(".cell")).to_have_count(1)
    await screenshot(page, "fanout-node-and-instances")

    await instances.locator('.cell[data-job="t-1"]').click()
    await expect(page).to_have_url(f"{stack.url}/workflows/{wf}/jobs/t-1")
    await expect(panel.locator("h2")).to_contain_text("instance t-1")
    await expect(panel.locator(".instance-of")).to_contain_text('Instance 1 of t · item {"n":1}')
    await expect(node).to_have_class(_contains("selected"))  # its job is marked in the graph
    await page.get_by_role("button", name="Skip…").click()
    await page.get_by_label("Outputs for its dependents").fill("note=skipped by hand")
    await page.get_by_role("button", name="Skip job").click()
    await expect(panel.locator(".facts .status")).to_have_attribute("data-status", "skipped")
    await expect(node).to_have_attribute("aria-label", _contains("1 skipped"))

    stack.release("go")
    await expect(node).to_have_attribute("data-status", "succeeded")
    await expect(node).to_have_attribute("aria-label", _contains("7 succeeded, 1 skipped"))
    await expect(page.locator(".wf-title .status")).to_contain_text("succeeded")
    await page.goto(f"{stack.url}/workflows/{wf}/jobs/t-2")  # straight to an instance
    await expect(panel.locator(".facts .status")).to_have_attribute("data-status", "succeeded")
    await expect(panel.locator(".logs")).to_contain_text("done 2")
    await expect(node).to_have_class(_contains("selected"))  # drawn, its job marked
    await screenshot(page, "fanout-instance")
    view = await stack.status(wf)
    assert (
        view["jobs"]["t"]["outputs"]["note"]
        == '[null,"skipped by hand",null,null,null,null,null,null]'
    )
    assert page_errors(page) == []


async def test_a_thousand_instances_are_one_node_and_a_grid(
    stack: Stack,  # noqa: F811
    page: Page,  # noqa: F811
) -> None:
    # No worker offers `nobody`: the instances stay queued, the test needs none of them run.
    wf = await stack.start(
        {
            "name": "thousand",
            "jobs": {
                "t": {
                    "strategy": {"matrix": {"n": list(range(1000))}},
                    "labels": ["nobody"],
                    "run": "true",
                },
                "after": {"needs": ["t"], "run": "true", "labels": ["linux"]},
            },
        }
    )
    await page.goto(f"{stack.url}/workflows/{wf}/jobs/t")
    node = page.locator('.node[data-job="t"]')
    await expect(node).to_have_attribute("data-instances", "1000")
    await expect(node).to_have_attribute("aria-label", _contains("1000 queued"))
    assert await page.locator(".node").count() == 2
    cells = page.locator(".instances .cell")
    await expect(cells).to_have_count(1000)
    await expect(page.locator('.instances button[data-status="queued"]')).to_contain_text(
        "1000 queued"
    )
    await screenshot(page, "fanout-thousand")
    cancelled = await stack.http.post(f"/api/workflows/{wf}/cancel", json={"reason": "done"})
    assert cancelled.status_code == 202
    await expect(node).to_have_attribute("aria-label", _contains("1000 cancelled"))
    await expect(page.locator('.instances button[data-status="cancelled"]')).to_contain_text(
        "1000 cancelled"
    )
    assert page_errors(page) == []


def _contains(text: str) -> re.Pattern[str]:
    return re.compile(re.escape(text))
