"""Workflow concurrency groups and fan-out instances on the pages, in a real headless Chromium
(the fixtures are ``test_ui.py``'s):

- a run waiting for its concurrency group shows ``queued`` with its group and reason, in the list
  (filtered on ``queued``) and on its page, which turns ``running`` live when it is admitted;
- a workflow's header counts every fan-out instance, as the list does, and "Find a job" finds an
  instance ``<job>-<index>``.
"""

from __future__ import annotations

import uuid
from typing import Any

from playwright.async_api import Page, expect

from tests.integration.test_ui import browser, page, stack  # noqa: F401  (fixtures)
from tests.integration.test_ui_fanout import matrix_flow
from tests.ui_harness import Stack, page_errors, screenshot


def grouped(name: str, group: str, run: str) -> dict[str, Any]:
    return {
        "name": name,
        "concurrency": {"group": group, "limit": 1},
        "jobs": {"deploy": {"run": run, "labels": ["linux"]}},
    }


async def test_a_run_waiting_for_its_group_shows_queued_then_running_live(
    stack: Stack,  # noqa: F811
    page: Page,  # noqa: F811
) -> None:
    group = f"deploy-{uuid.uuid4().hex[:6]}"
    first = await stack.start(grouped("first", group, stack.gate("first")))
    await page.goto(f"{stack.url}/workflows/{first}")
    await expect(page.locator('.node[data-job="deploy"]')).to_have_attribute(
        "data-status", "running"
    )
    second = await stack.start(grouped("second", group, stack.gate("second")))

    # The list, filtered on `queued` (an option of the status filter): the second run only.
    await page.goto(f"{stack.url}/")
    await page.get_by_label("Status").select_option("queued")
    await expect(page).to_have_url(f"{stack.url}/?status=queued")
    rows = page.locator(".wf-row")
    await expect(rows).to_have_count(1)
    row = page.locator(f'.wf-row[data-workflow="{second}"]')
    await expect(row).to_have_attribute("data-status", "queued")
    await expect(row.locator(".status")).to_contain_text("queued")
    await expect(row.locator(".group")).to_contain_text(f"waiting for concurrency group {group}")
    await screenshot(page, "workflows-queued")

    # Its page: queued, why, and in which group; no job runs; it can be cancelled, not paused.
    await row.get_by_role("link", name="second").click()
    await expect(page).to_have_url(f"{stack.url}/workflows/{second}")
    title = page.locator(".wf-title .status")
    await expect(title).to_have_attribute("data-status", "queued")
    await expect(page.locator(".facts .group")).to_contain_text(group)
    reason = page.locator(".reason")
    await expect(reason).to_have_text(f"waiting for concurrency group {group} (limit 1)")
    await expect(page.locator('.node[data-job="deploy"]')).to_have_attribute(
        "data-status", "pending"
    )
    await expect(page.get_by_role("button", name="Cancel workflow…")).to_be_visible()
    await expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    await screenshot(page, "workflow-queued")

    # The first run ends and gives its slot: WorkflowAdmitted, followed live on the page.
    stack.release("first")
    await expect(title).to_have_attribute("data-status", "running")
    await expect(reason).to_have_count(0)
    await expect(page.locator('.node[data-job="deploy"]')).to_have_attribute(
        "data-status", "running"
    )
    await expect(page.locator(".facts .group")).to_contain_text(group)  # it holds a slot there
    stack.release("second")
    await expect(title).to_have_attribute("data-status", "succeeded")
    assert (await stack.status(second))["status"] == "succeeded"
    assert page_errors(page) == []


async def test_the_header_counts_instances_and_find_finds_them(
    stack: Stack,  # noqa: F811
    page: Page,  # noqa: F811
) -> None:
    wf = await stack.start(matrix_flow(stack))  # prepare, t (8 instances, t-1 fails), report
    await page.goto(f"{stack.url}/workflows/{wf}")
    node = page.locator('.node[data-job="t"]')
    await expect(node).to_have_attribute("data-instances", "8")
    jobs = page.locator(".facts")
    # prepare, t, t-0 ... t-7 and report, as in the status object: prepare and t-1 have ended.
    await expect(jobs).to_contain_text("2 of 11 done")
    counts = page.locator(".facts .counts")
    await expect(counts.locator(".count.st-failed")).to_contain_text("1 failed")
    await expect(counts.locator(".count.st-succeeded")).to_contain_text("1 succeeded")

    await page.get_by_label("Find a job").fill("t-5")
    found = page.locator(".overview .job-list li")
    await expect(found).to_have_count(1)
    await expect(found.get_by_role("link", name="t-5")).to_have_attribute(
        "href", f"/workflows/{wf}/jobs/t-5"
    )
    await page.get_by_label("Find a job").fill("t-")
    await expect(found).to_have_count(8)  # the instances, not t itself
    await page.get_by_label("Find a job").fill("t-1")
    await expect(found.locator(".status")).to_have_attribute("data-status", "failed")
    await screenshot(page, "workflow-find-instance")

    stack.release("go")
    await expect(page.locator(".wf-title .status")).to_have_attribute("data-status", "failed")
    await expect(jobs).to_contain_text("11 of 11 done")
    listed = (await stack.http.get("/api/workflows")).json()["workflows"]
    assert sum(next(r for r in listed if r["workflow_id"] == wf)["job_counts"].values()) == 11
    await found.get_by_role("link", name="t-1").click()
    await expect(page).to_have_url(f"{stack.url}/workflows/{wf}/jobs/t-1")
    await expect(page.locator(".job-panel h2")).to_contain_text("instance t-1")
    assert page_errors(page) == []
