"""Namespaces in the web UI, in a real headless Chromium against a real gateway (the fixtures are
``test_ui.py``'s), and the gateway's ``GET /api/namespaces`` that feeds its selector:

- two namespaces' workflows: the list in each shows only its own, the selector (and a name typed
  in) switches between them, keeping ``?namespace=`` in the URL and in every link;
- a workflow's page says which namespace it runs in; another namespace's workflow is not found,
  and its events stream is refused (404) in the wrong namespace;
- the workers page and the start form work in the page's namespace; the quota is shown.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Page, expect

from sdk.client import Client
from sdk.worker import Worker
from tests.eventually import assert_eventually
from tests.integration.test_ui import browser, page, stack  # noqa: F401  (fixtures)
from tests.jobs_harness import fast_config
from tests.ui_harness import Stack, page_errors, screenshot

A, B = "team-a", "team-b"


def flow(name: str, run: str) -> dict[str, Any]:
    return {"name": name, "jobs": {"work": {"run": run, "labels": ["linux"]}}}


async def start_in(running: Stack, namespace: str, workflow: dict[str, Any]) -> str:
    answer = await running.http.post(
        "/api/workflows", json={"workflow": workflow}, headers={"Jetwork-Namespace": namespace}
    )
    assert answer.status_code == 201, answer.text
    workflow_id: str = answer.json()["workflow_id"]
    return workflow_id


async def test_api_namespaces_lists_the_known_ones_with_quota_and_workers(
    stack: Stack,  # noqa: F811
    nats_url: str,
) -> None:
    client = await Client.connect(nats_url)
    try:
        await client.set_quota(B, max_running_workflows=3, over_quota="refuse")
    finally:
        await client.close()
    worker = Worker(fast_config(nats_url, worker_id="w-team-a", labels=frozenset({"linux"}),
                                namespace=A))  # fmt: skip
    await worker.start()
    try:
        done = await start_in(stack, A, flow("alpha", "true"))
        await start_in(stack, "team-c", flow("gamma", "true"))  # no worker there: it waits

        async def listed() -> dict[str, Any]:
            answer = await stack.http.get("/api/namespaces")
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            assert body["current"] == "default" and body["gateway"] == "default"
            # default (always), team-a (its worker, its workflow), team-b (its quota), team-c
            # (a workflow only, once projected): sorted by name.
            assert [each["namespace"] for each in body["namespaces"]] == ["default", A, B, "team-c"]
            return {each["namespace"]: each for each in body["namespaces"]}

        by_name = await assert_eventually(listed)
        assert by_name[A]["workers"] == 1 and by_name[A]["quota"] is None
        assert by_name["default"]["workers"] == 1  # the stack's own worker
        quota = by_name[B]["quota"]
        assert quota["max_running_workflows"] == 3 and quota["running_workflows"] == 0
        assert quota["over_quota"] == "refuse" and quota["max_running_jobs"] is None

        # Asked in a namespace nothing knows yet: it is the current one, and listed.
        answer = await stack.http.get("/api/namespaces", headers={"Jetwork-Namespace": "new-one"})
        assert answer.json()["current"] == "new-one"
        assert "new-one" in [each["namespace"] for each in answer.json()["namespaces"]]
        answer = await stack.http.get("/api/namespaces?namespace=bad.name")
        assert answer.status_code == 422 and answer.json()["code"] == "invalid_namespace"

        # The events stream of another namespace's workflow: not found, before it streams.
        answer = await stack.http.get(f"/api/events?workflow_id={done}&namespace={B}")
        assert answer.status_code == 404, answer.text
        assert answer.json()["code"] == "unknown_workflow"
    finally:
        await worker.stop()


async def test_the_ui_works_in_the_namespace_it_is_switched_to(
    stack: Stack,  # noqa: F811
    page: Page,  # noqa: F811
    nats_url: str,
) -> None:
    client = await Client.connect(nats_url)
    try:
        await client.set_quota(B, max_running_workflows=3)
    finally:
        await client.close()
    worker = Worker(fast_config(nats_url, worker_id="w-team-a", labels=frozenset({"linux"}),
                                namespace=A))  # fmt: skip
    await worker.start()
    try:
        alpha = await start_in(stack, A, flow("alpha", "true"))
        beta = await start_in(stack, B, flow("beta", stack.gate("beta")))  # no worker: it waits

        # team-a's list: alpha only (not beta, not the default namespace's).
        await page.goto(f"{stack.url}/?namespace={A}")
        rows = page.locator(".wf-row")
        await expect(page.locator(f'.wf-row[data-workflow="{alpha}"]')).to_be_visible()
        await expect(rows).to_have_count(1)
        selector = page.get_by_label("Namespace", exact=True)
        await expect(selector).to_have_value(A)
        await screenshot(page, "namespaces-team-a")

        # The selector lists the namespaces known; picking team-b shows beta only, and its quota.
        await expect(selector.locator("option")).to_have_text(
            ["default", A, B, "Other…"], timeout=20_000
        )
        await selector.select_option(B)
        await expect(page).to_have_url(f"{stack.url}/?namespace={B}")
        await expect(page.locator(f'.wf-row[data-workflow="{beta}"]')).to_be_visible()
        await expect(rows).to_have_count(1)
        await expect(page.locator(".ns-quota")).to_have_text("1 / 3 workflows")
        await screenshot(page, "namespaces-team-b")

        # Its page, reached by its link, keeps the namespace and says it.
        await (
            page.locator(f'.wf-row[data-workflow="{beta}"]')
            .get_by_role("link", name="beta")
            .click()
        )
        await expect(page).to_have_url(f"{stack.url}/workflows/{beta}?namespace={B}")
        await expect(page.locator(".wf-title")).to_contain_text(f"namespace {B}")
        await expect(page.get_by_role("link", name="← Workflows")).to_have_attribute(
            "href", f"/?namespace={B}"
        )
        await screenshot(page, "namespaces-workflow")

        # Another namespace's workflow is not there.
        await page.goto(f"{stack.url}/workflows/{alpha}?namespace={B}")
        await expect(page.get_by_role("status")).to_contain_text("not found")
        await expect(page.locator(".wf-title")).to_have_count(0)
        await screenshot(page, "namespaces-not-found")

        # Workers: team-b has none (the default's and team-a's are not its); team-a has its own.
        await page.goto(f"{stack.url}/workers?namespace={B}")
        await expect(page.locator("p.empty")).to_contain_text("No live worker")
        await expect(page.get_by_text("w-team-a")).to_have_count(0)
        await expect(page.get_by_text("w-ui")).to_have_count(0)
        # A name typed in: the same page in that namespace; a bad one is refused, located.
        await selector.select_option("Other…")
        await page.get_by_label("Namespace name").fill("bad.name")
        await page.get_by_role("button", name="Go").click()
        await expect(page.locator(".ns-problem")).to_contain_text("'bad.name' is not a namespace")
        await page.get_by_label("Namespace name").fill(A)
        await page.get_by_role("button", name="Go").click()
        await expect(page).to_have_url(f"{stack.url}/workers?namespace={A}")
        await expect(page.locator("table.workers")).to_contain_text("w-team-a")
        await expect(page.get_by_text("w-ui")).to_have_count(0)

        # The start form starts in the page's namespace (the nav link keeps it).
        await page.get_by_role("link", name="Start", exact=True).click()
        await expect(page).to_have_url(f"{stack.url}/start?namespace={A}")
        await page.get_by_label("Workflow (YAML)").fill(
            "name: from-team-a\njobs:\n  hello:\n    run: echo hi\n    labels: [linux]\n"
        )
        await page.get_by_role("button", name="Start", exact=True).click()
        await expect(page).to_have_url(re.compile(rf"/workflows/wf-[0-9a-f]+\?namespace={A}$"))
        await expect(page.locator(".wf-title")).to_contain_text(f"namespace {A}")
        await expect(page.locator('.node[data-job="hello"]')).to_have_attribute(
            "data-status", "succeeded"
        )
        started = page.url.split("/workflows/")[1].split("?")[0]
        status = await stack.http.get(f"/api/workflows/{started}?namespace={A}")
        assert status.status_code == 200 and status.json()["namespace"] == A
        assert (await stack.http.get(f"/api/workflows/{started}")).status_code == 404
        stack.release("beta")
        assert page_errors(page) == []
    finally:
        await worker.stop()
