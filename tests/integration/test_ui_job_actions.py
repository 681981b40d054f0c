"""A job's Skip (with outputs) and "Rerun from here" on a workflow's page, in a real headless
Chromium (the fixtures are ``test_ui.py``'s)."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.eventually import assert_eventually
from tests.integration.test_ui import browser, page, stack  # noqa: F401  (fixtures)
from tests.ui_harness import Stack, page_errors


async def test_skip_a_waiting_job_with_outputs_its_dependent_reads(
    stack: Stack,  # noqa: F811
    page: Page,  # noqa: F811
) -> None:
    wf = await stack.start(
        {
            "name": "stuck",
            "jobs": {
                # No worker offers gpu: it waits, queued, until an operator skips it.
                "waits": {"run": "true", "labels": ["gpu"]},
                "after": {
                    "needs": ["waits"],
                    "run": 'echo "::set-output got=${{ needs.waits.outputs.version }}"',
                    "labels": ["linux"],
                },
            },
        }
    )
    await page.goto(f"{stack.url}/workflows/{wf}")
    waits = page.locator('.node[data-job="waits"]')
    await expect(waits).to_have_attribute("data-status", "queued")
    await waits.click()
    await page.get_by_role("button", name="Skip…").click()
    await page.get_by_label("Outputs for its dependents").fill("version 2")
    await page.get_by_role("button", name="Skip job").click()
    await expect(page.get_by_role("alert")).to_contain_text('"version 2" is not KEY=VALUE')
    await page.get_by_label("Outputs for its dependents").fill("version=1.2.3")
    await page.get_by_role("button", name="Skip job").click()
    await expect(waits).to_have_attribute("data-status", "skipped")
    await expect(page.locator('.node[data-job="after"]')).to_have_attribute(
        "data-status", "succeeded"
    )
    await expect(page.locator(".wf-title .status")).to_contain_text("succeeded")
    view = await stack.status(wf)
    assert view["jobs"]["after"]["outputs"] == {"got": "1.2.3"}
    assert "skipped by web UI" in view["jobs"]["waits"]["reason"]
    assert page_errors(page) == []


async def test_rerun_from_a_job_runs_it_and_what_follows_again(
    stack: Stack,  # noqa: F811
    page: Page,  # noqa: F811
) -> None:
    wf = await stack.start(
        {
            "name": "pair",
            "jobs": {
                "first": {"run": "true", "labels": ["linux"]},
                "second": {"needs": ["first"], "run": "true", "labels": ["linux"]},
            },
        }
    )
    await page.goto(f"{stack.url}/workflows/{wf}")
    await expect(page.locator(".wf-title .status")).to_contain_text("succeeded")
    await page.locator('.node[data-job="second"]').click()
    await expect(page.get_by_role("button", name="Skip…")).to_have_count(0)  # it has ended
    await page.get_by_role("button", name="Rerun from here").click()
    await expect(
        page.get_by_role("status").filter(has_text="rerunning from second")
    ).to_be_visible()

    async def ran_again() -> bool:
        view = await stack.status(wf)
        attempts = {name: job["attempts"] for name, job in view["jobs"].items()}
        assert (view["status"], attempts) == ("succeeded", {"first": 1, "second": 2}), view
        return True

    await assert_eventually(ran_again, timeout=20)
    await expect(page.locator(".wf-title .status")).to_contain_text("succeeded")
    history = (await stack.http.get(f"/api/workflows/{wf}/history")).json()["events"]
    assert "WorkflowRerun" in [event["type"] for event in history]
    assert page_errors(page) == []
