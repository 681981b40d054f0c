"""The web UI in a real headless Chromium against a real gateway, engine, projector and worker:
what a person sees on each page, and that it changes live. Screenshots: tests/artifacts/ui/."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from playwright.async_api import Browser, Page, expect

from events import subjects
from gateway.auth import Role, Tokens
from gateway.settings import GatewaySettings
from tests.eventually import assert_eventually
from tests.gateway_harness import finished
from tests.ui_harness import (
    ARTIFACTS,
    Stack,
    chromium,
    new_page,
    page_errors,
    running_stack,
    screenshot,
)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as found:
        yield found


@pytest.fixture
async def stack(clean_nats: NATS, nats_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(clean_nats, nats_url, tmp_path) as running:
        yield running


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    opened = await new_page(browser)
    yield opened
    await opened.context.close()


def release_flow(stack: Stack) -> dict[str, Any]:
    return {
        "name": "release",
        "inputs": {"version": {"default": "1.2.3"}},
        "jobs": {
            "build": {
                "run": 'echo "::set-output artifact=app-${{ inputs.version }}.tgz"',
                "labels": ["linux"],
            },
            "unit": {"needs": ["build"], "run": "echo unit ok", "labels": ["linux"]},
            "lint": {"needs": ["build"], "run": "echo lint ok", "labels": ["linux"]},
            "gate": {"needs": ["unit", "lint"], "run": stack.gate("gate"), "labels": ["linux"]},
            "mirror-a": {"needs": ["build"], "run": "true", "labels": ["linux"]},
            "mirror-b": {"needs": ["build"], "run": "false", "labels": ["linux"],
                         "on_failure": "continue"},
            "publish": {"needs": ["gate"], "needs_any": ["mirror-a", "mirror-b"],
                        "run": "echo published", "labels": ["linux"]},
        },
    }  # fmt: skip


async def node_status(page: Page, job: str) -> str | None:
    return await page.get_attribute(f'.node[data-job="{job}"]', "data-status")


async def test_the_dag_shows_every_job_with_its_status_and_changes_live_without_reload(
    stack: Stack, page: Page
) -> None:
    wf = await stack.start(release_flow(stack))
    await page.goto(f"{stack.url}/workflows/{wf}")
    nodes = page.locator(".node")
    await expect(nodes).to_have_count(7)
    await expect(page.locator('.node[data-job="gate"]')).to_have_attribute("data-status", "running")
    await page.evaluate("window.__notReloaded = true")
    # Each node says its name and its status in words (not colour alone).
    for job in ["build", "unit", "lint", "gate", "mirror-a", "mirror-b", "publish"]:
        node = page.locator(f'.node[data-job="{job}"]')
        text = await node.text_content() or ""
        status = await node.get_attribute("data-status")
        assert job in text and status is not None and status in text, (job, text)
    assert await node_status(page, "publish") == "pending"
    assert await page.locator(".dag path.edge.any").count() == 2  # needs_any drawn apart
    assert await page.locator(".dag path.edge:not(.any)").count() == 7
    await expect(page.locator(".wf-title .status")).to_contain_text("running")
    await screenshot(page, "workflow-running")

    stack.release("gate")  # the gate job finishes: its node and what follows change live
    await expect(page.locator('.node[data-job="gate"]')).to_have_attribute(
        "data-status", "succeeded"
    )
    await expect(page.locator('.node[data-job="publish"]')).to_have_attribute(
        "data-status", "succeeded"
    )
    await expect(page.locator(".wf-title .status")).to_contain_text("succeeded")
    assert await page.evaluate("window.__notReloaded") is True
    final = await stack.status(wf)
    for job, view in final["jobs"].items():
        assert await node_status(page, job) == view["status"], job
    await expect(page.locator(".overview")).to_contain_text("app-1.2.3.tgz")  # outputs
    await expect(page.locator(".overview")).to_contain_text('"1.2.3"')  # inputs
    await screenshot(page, "workflow-succeeded")

    # The history timeline: every event in log order.
    await page.get_by_role("tab", name="History").click()
    history = (await stack.http.get(f"/api/workflows/{wf}/history")).json()["events"]
    await expect(page.locator(".history")).to_contain_text(f"{len(history)} events")
    await expect(page.locator(".event-row").first).to_contain_text("WorkflowStarted")
    await screenshot(page, "workflow-history")
    assert page_errors(page) == []


async def test_the_keyboard_moves_between_jobs_and_opens_them(stack: Stack, page: Page) -> None:
    wf = await stack.start(release_flow(stack))
    await page.goto(f"{stack.url}/workflows/{wf}")
    await expect(page.locator(".node")).to_have_count(7)
    dag = page.get_by_role("application")
    await dag.focus()
    await expect(page.locator(".node.focused")).to_have_attribute("data-job", "build")
    await page.keyboard.press("ArrowRight")
    focused = await page.get_attribute(".node.focused", "data-job")
    assert focused in {"unit", "lint", "mirror-a", "mirror-b"}
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{stack.url}/workflows/{wf}/jobs/{focused}")
    await expect(page.locator(".job-panel h2")).to_contain_text(focused)
    await expect(page.locator(".job-panel h2")).to_be_focused()  # read out on opening
    await page.keyboard.press("Escape")  # closes the job from the panel too
    await expect(page).to_have_url(f"{stack.url}/workflows/{wf}")
    await expect(page.locator(".job-panel")).to_have_count(0)
    await expect(dag).to_be_focused()  # back where the job was opened
    await page.keyboard.press("Tab")  # and on to the graph's tools
    await expect(page.get_by_role("button", name="Zoom in")).to_be_focused()
    stack.release("gate")
    await finished(stack.store, wf)


async def test_logs_stream_into_the_job_view_per_attempt_with_stderr_marked(
    stack: Stack, page: Page
) -> None:
    script = (
        'echo "compiling ${{ inputs.n }} files"; echo "warning: slow disk" >&2; '
        f"{stack.gate('talk')}; echo 'linking'; echo 'done' >&2"
    )
    wf = await stack.start(
        {
            "name": "talkative",
            "inputs": {"n": {"default": 3}},
            "jobs": {"talk": {"run": script, "labels": ["linux"]}},
        }
    )
    await page.goto(f"{stack.url}/workflows/{wf}")
    await page.locator('.node[data-job="talk"]').click()  # a click opens the job
    await expect(page).to_have_url(f"{stack.url}/workflows/{wf}/jobs/talk")
    log = page.locator(".log-box")
    await expect(log).to_contain_text("compiling 3 files")
    await expect(log.locator(".log-line.stderr")).to_contain_text("warning: slow disk")
    await expect(log.locator(".log-line.stderr .log-stream").first).to_have_text("err")
    await expect(log.locator(".log-attempt")).to_contain_text("attempt 1")
    await expect(page.locator(".claims")).to_contain_text("w-ui")
    await screenshot(page, "job-running")
    stack.release("talk")  # the rest of the log arrives live
    await expect(log).to_contain_text("linking")
    await expect(log.locator(".log-line.stderr").last).to_contain_text("done")
    await expect(page.locator(".logs-head")).to_contain_text("ended: job succeeded")
    claims = page.locator(".claims tbody tr")
    await expect(claims).to_have_count(1)
    await expect(claims.first).to_contain_text("succeeded")
    await screenshot(page, "job-succeeded")
    assert page_errors(page) == []


async def test_a_retried_job_shows_each_attempt_under_its_header_and_both_claims(
    stack: Stack, page: Page
) -> None:
    marker = stack.work_dir / "tried"
    script = (
        f'if [ -e "{marker}" ]; then echo "second try"; '
        f'else touch "{marker}"; echo "first try"; echo "boom" >&2; exit 3; fi'
    )
    job = {"run": script, "labels": ["linux"], "retry": {"max_attempts": 2}}
    wf = await stack.start({"name": "flaky", "jobs": {"flaky": job}})
    await finished(stack.store, wf)
    await page.goto(f"{stack.url}/workflows/{wf}/jobs/flaky")
    headers = page.locator(".log-attempt")
    await expect(headers).to_have_count(2)
    await expect(headers.nth(0)).to_contain_text("attempt 1")
    await expect(headers.nth(0)).to_contain_text("failed")
    await expect(headers.nth(1)).to_contain_text("attempt 2")
    await expect(page.locator(".log-box")).to_contain_text("second try")
    claims = page.locator(".claims tbody tr")
    await expect(claims).to_have_count(2)
    await expect(claims.nth(0)).to_contain_text("exit code 3")
    await expect(claims.nth(1)).to_contain_text("succeeded")
    await expect(page.locator('.node[data-job="flaky"]')).to_contain_text("attempt 2")
    await screenshot(page, "job-retried")
    assert page_errors(page) == []


async def test_cancel_from_the_page_cancels_the_workflow(stack: Stack, page: Page) -> None:
    wf = await stack.start(
        {"name": "long", "jobs": {"wait": {"run": stack.gate("never"), "labels": ["linux"]}}}
    )
    await page.goto(f"{stack.url}/workflows/{wf}")
    await expect(page.locator('.node[data-job="wait"]')).to_have_attribute("data-status", "running")
    await page.get_by_role("button", name="Cancel workflow…").click()
    await page.get_by_label("Reason").fill("changed my mind")
    await screenshot(page, "workflow-cancel-form")
    await page.get_by_role("button", name="Cancel it").click()
    await expect(page.locator(".wf-title .status")).to_contain_text("cancelled")
    await expect(page.locator('.node[data-job="wait"]')).to_have_attribute(
        "data-status", "cancelled"
    )
    await expect(page.locator(".reason")).to_contain_text("changed my mind")
    history = await finished(stack.store, wf)
    assert history[-1].event.event_type == "WorkflowCancelled"
    assert (await stack.status(wf))["reason"] == "changed my mind"
    await screenshot(page, "workflow-cancelled")
    assert page_errors(page) == []


async def test_the_start_form_locates_problems_then_starts_a_valid_file(
    stack: Stack, page: Page
) -> None:
    await page.goto(f"{stack.url}/start")
    broken = "name: broken\njobs:\n  a:\n    needs: [zz]\n    run: echo a\n"
    await page.get_by_label("Workflow (YAML)").fill(broken)
    await page.get_by_role("button", name="Start", exact=True).click()
    problems = page.locator(".problems")
    await expect(problems).to_contain_text("line 4")
    await expect(problems).to_contain_text("unknown job 'zz'")
    await expect(page.locator(".gutter .bad")).to_have_text("✗ 4")
    await screenshot(page, "start-invalid")

    valid = "name: from-the-page\njobs:\n  hello:\n    run: echo hi\n    labels: [linux]\n"
    await page.get_by_label("Workflow (YAML)").fill(valid)
    await page.get_by_role("button", name="Start", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/workflows/wf-[0-9a-f]+$"))
    await expect(page.locator(".wf-title h1")).to_have_text("from-the-page")
    await expect(page.locator('.node[data-job="hello"]')).to_have_attribute(
        "data-status", "succeeded"
    )
    assert page_errors(page) == []


async def test_the_workflows_workers_and_dead_letters_pages(stack: Stack, page: Page) -> None:
    done = await stack.start({"name": "quick", "jobs": {"a": {"run": "true", "labels": ["linux"]}}})
    await finished(stack.store, done)
    waiting = await stack.start(
        {"name": "needs-gpu", "jobs": {"train": {"run": "true", "labels": ["gpu"]}}}
    )
    garbage = subjects.command("start", "wf-garbage")  # cmd.<partition>.start.wf-garbage
    await stack.nc.jetstream().publish(garbage, b"not json")
    await page.goto(stack.url + "/")
    rows = page.locator("tr.wf-row")
    await expect(rows).to_have_count(2)
    await expect(page.locator(f'tr[data-workflow="{done}"]')).to_contain_text("succeeded")
    await expect(page.locator(f'tr[data-workflow="{waiting}"]')).to_contain_text("running")
    await screenshot(page, "workflows")
    await page.get_by_label("Status").select_option("succeeded")
    await expect(rows).to_have_count(1)
    await expect(page).to_have_url(stack.url + "/?status=succeeded")

    await page.get_by_role("link", name="Workers").click()
    await expect(page.locator("table.workers")).to_contain_text("w-ui")
    await expect(page.locator("table.workers")).to_contain_text("linux")
    unserved = page.locator("tr.unserved")
    await expect(unserved).to_contain_text("gpu")
    await expect(unserved).to_contain_text("nobody serves")
    await screenshot(page, "workers")

    await page.get_by_role("link", name="Dead letters").click()
    await expect(page.locator("table.dead-letters")).to_contain_text(garbage)
    await screenshot(page, "dead-letters")
    assert page_errors(page) == []


async def test_with_tokens_the_page_asks_for_one_and_sends_it_on_calls_and_streams(
    clean_nats: NATS, nats_url: str, tmp_path: Path, page: Page
) -> None:
    tokens = Tokens({"client-token-1": Role.CLIENT, "admin-token-1": Role.ADMIN})
    settings = GatewaySettings(port=0, tokens=tokens)
    async with running_stack(
        clean_nats, nats_url, tmp_path, settings=settings, token="admin-token-1"
    ) as stack:
        flow = {"name": "guarded", "jobs": {"g": {"run": stack.gate("g"), "labels": ["linux"]}}}
        wf = await stack.start(flow)
        await page.goto(stack.url + "/")
        prompt = page.locator(".token-prompt")
        await expect(prompt).to_contain_text("needs a token")
        await screenshot(page, "token-prompt")
        await prompt.get_by_label("needs a token").fill("client-token-1")
        await prompt.get_by_role("button", name="Use it").click()
        await expect(page.locator(f'tr[data-workflow="{wf}"]')).to_contain_text("running")
        await expect(prompt).to_have_count(0)
        await page.locator(f'tr[data-workflow="{wf}"] a').first.click()
        node = page.locator('.node[data-job="g"]')
        await expect(node).to_have_attribute("data-status", "running")
        stack.release("g")  # the events stream carries the token too: the node changes live
        await expect(node).to_have_attribute("data-status", "succeeded")
        await page.get_by_role("link", name="Dead letters").click()
        await expect(page.locator(".error")).to_contain_text("need an admin token")


def wide_dag(jobs: int, width: int) -> dict[str, Any]:
    """``jobs`` no-op jobs in stages of ``width``: each needs two jobs of the stage before, and
    every tenth one needs any of three."""
    definition: dict[str, Any] = {}
    for n in range(jobs):
        stage, i = divmod(n, width)
        spec: dict[str, Any] = {"run": "true", "labels": ["linux"]}
        if stage:
            before = (stage - 1) * width
            spec["needs"] = [f"j{before + i}", f"j{before + (i + 1) % width}"]
            if i % 10 == 0:
                spec["needs_any"] = [f"j{before + (i + 2) % width}", f"j{before + (i + 3) % width}"]
        definition[f"j{n}"] = spec
    return {"name": f"wide-{jobs}", "jobs": definition}


@pytest.mark.timeout(300)  # 1,000 jobs through one worker, on a machine other suites may load
async def test_a_dag_of_1000_jobs_renders_and_stays_responsive_while_it_runs(
    stack: Stack, page: Page
) -> None:
    """Measures (asserts no time): how long until 1,000 nodes are drawn, and the longest main
    thread stall while the workflow runs and its nodes change. Figures: tests/artifacts/ui/."""
    wf = await stack.start(wide_dag(1000, 100))
    await page.add_init_script(
        """
        window.__stalls = [];
        new PerformanceObserver((list) => {
          for (const e of list.getEntries()) window.__stalls.push(e.duration);
        }).observe({type: 'longtask', buffered: true});
        window.__frames = [];
        let last = performance.now();
        const frame = (t) => {
          window.__frames.push(t - last); last = t; requestAnimationFrame(frame);
        };
        requestAnimationFrame(frame);
        """
    )
    await page.goto(f"{stack.url}/workflows/{wf}")

    async def laid_out() -> Any:  # (wait_for_function would eval inside the page's CSP)
        figures = await page.evaluate("window.__jetwork")
        return figures if figures and "laidOutMs" in figures else None

    # Drawn at once as a sketch (ELK's layers, straight edges), then ELK's layout replaces it.
    drawn = await assert_eventually(laid_out, timeout=90)
    assert drawn["graphJobs"] == 1000
    assert drawn["drawnMs"] <= drawn["laidOutMs"]
    await expect(page.locator(".dag-svg.sketch")).to_have_count(0)
    assert await page.locator(".node").count() > 0  # the start of the graph, readable
    await screenshot(page, "dag-1000-running")
    await page.get_by_role("button", name="Fit the whole graph").click()  # the whole graph
    await expect(page.locator(".node")).to_have_count(1000)
    await screenshot(page, "dag-1000-whole")
    await page.evaluate("window.__frames = []; window.__stalls = []")
    await expect(page.locator(".wf-title .status")).to_contain_text("succeeded", timeout=200_000)
    stats = await page.evaluate(
        """() => ({
            frames: window.__frames.length,
            longestFrameMs: Math.round(Math.max(0, ...window.__frames)),
            longTasks: window.__stalls.length,
            longestTaskMs: Math.round(Math.max(0, ...window.__stalls)),
        })"""
    )
    await expect(page.locator('.node[data-status="succeeded"]')).to_have_count(1000)
    await screenshot(page, "dag-1000-succeeded")
    # The page answers input right after: the keyboard moves the focus through the big graph.
    await page.get_by_role("application").focus()
    await page.keyboard.press("ArrowRight")
    await expect(page.locator(".node.focused")).to_have_count(1)
    figures = {"jobs": 1000, **drawn, "while_running": stats}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "figures.json").write_text(json.dumps(figures, indent=2))
    print(f"\nUI figures (1,000-job DAG): {json.dumps(figures)}")

    async def _ended() -> bool:
        return (await stack.status(wf))["status"] == "succeeded"

    await assert_eventually(_ended)
    assert page_errors(page) == []
