"""Pause, resume, skip, retry, rerun and restart over real HTTP: the answers, the refusals, and
``paused`` in the status and the listings (projections), with the engine and a projector
running."""

from __future__ import annotations

from typing import Any

import httpx
from nats.aio.client import Client as NATS

from events.store import EventStore
from tests.eventually import assert_eventually
from tests.gateway_harness import claim_eventually, finished, start
from tests.integration.test_gateway_api import http  # noqa: F401  (the fixture)

TWO = {
    "name": "two",
    "jobs": {
        "a": {"run": "echo a", "labels": ["http"]},
        "b": {"needs": ["a"], "run": "echo got ${{ needs.a.outputs.v }}", "labels": ["http"]},
    },
}


async def listed(
    http: httpx.AsyncClient,  # noqa: F811
    status: str,
    wf: str,
    *,
    present: bool,
) -> None:
    async def probe() -> bool:
        rows = (await http.get(f"/api/workflows?status={status}&name=two")).json()["workflows"]
        return (wf in [row["workflow_id"] for row in rows]) == present

    await assert_eventually(probe, message=f"{wf} {'not ' if present else ''}listed {status}")


async def test_pause_skip_resume_over_http(
    http: httpx.AsyncClient,  # noqa: F811
    clean_nats: NATS,
) -> None:
    wf = await start(http, TWO)
    await listed(http, "running", wf, present=True)
    paused = await http.post(f"/api/workflows/{wf}/pause")  # no body: every default
    assert paused.status_code == 200, paused.text
    assert paused.json() == {
        "workflow_id": wf,
        "command": "pause",
        "applied": True,
        "changed": True,
        "job": None,
    }
    again = await http.post(f"/api/workflows/{wf}/pause", json={"by": "ops"})
    assert (again.status_code, again.json()["changed"]) == (200, False)
    status = (await http.get(f"/api/workflows/{wf}")).json()
    assert (status["status"], status["reason"]) == ("paused", "paused by http")
    await listed(http, "paused", wf, present=True)
    await listed(http, "running", wf, present=False)

    unknown = await http.post(f"/api/workflows/{wf}/jobs/zz/skip", json={})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_job")
    skipped = await http.post(
        f"/api/workflows/{wf}/jobs/a/skip", json={"outputs": {"v": 7}, "reason": "known"}
    )
    assert skipped.status_code == 200, skipped.text
    assert skipped.json()["job"] == "a" and skipped.json()["changed"] is True

    resumed = await http.post(f"/api/workflows/{wf}/resume", json={"by": "ops"})
    assert resumed.status_code == 200, resumed.text
    # Running again: the index takes it back (a status it had before, within the dedup window).
    await listed(http, "running", wf, present=True)
    claimed = await claim_eventually(http, "w", ["http"])
    assert (claimed["job"]["job_id"], claimed["job"]["command"]) == ("b", "echo got 7")
    await http.post(f"/api/jobs/{claimed['lease']['lease_id']}/complete", json={})
    await finished(EventStore(clean_nats), wf)
    view = (await http.get(f"/api/workflows/{wf}")).json()
    assert view["status"] == "succeeded"
    assert (view["jobs"]["a"]["status"], view["jobs"]["a"]["reason"]) == (
        "skipped",
        "skipped by http: known",
    )

    refused = await http.post(f"/api/workflows/{wf}/pause")
    assert refused.status_code == 409
    assert refused.json() == {
        "error": f"cannot pause workflow '{wf}': it has ended (succeeded)",
        "code": "refused",
        "status": 409,
    }
    missing = await http.post("/api/workflows/wf-none/resume")
    assert (missing.status_code, missing.json()["code"]) == (404, "unknown_workflow")
    bad = await http.post(f"/api/workflows/{wf}/retry", json={"timeout": -1})
    assert bad.status_code == 422


async def test_retry_over_http_runs_the_failed_job_again(
    http: httpx.AsyncClient,  # noqa: F811
    clean_nats: NATS,
) -> None:
    wf = await start(http, {"name": "two", "jobs": {"a": {"run": "x", "labels": ["http"]}}})
    early = await http.post(f"/api/workflows/{wf}/retry")
    assert early.status_code == 409 and "it is running" in early.json()["error"]
    claimed = await claim_eventually(http, "w", ["http"])
    lease = claimed["lease"]["lease_id"]
    await http.post(f"/api/jobs/{lease}/fail", json={"error": "bad key", "retryable": False})
    await finished(EventStore(clean_nats), wf)
    await listed(http, "failed", wf, present=True)

    retried = await http.post(f"/api/workflows/{wf}/retry", json={"reason": "key rotated"})
    assert retried.status_code == 200, retried.text
    claimed = await claim_eventually(http, "w", ["http"])
    assert (claimed["job"]["job_id"], claimed["job"]["attempt"]) == ("a", 2)
    await listed(http, "failed", wf, present=False)  # it left its end's listing
    await http.post(f"/api/jobs/{claimed['lease']['lease_id']}/complete", json={})

    async def succeeded() -> Any:
        return (await http.get(f"/api/workflows/{wf}")).json()["status"] == "succeeded"

    await assert_eventually(succeeded)
    history = (await http.get(f"/api/workflows/{wf}/history")).json()["events"]
    retried_event = next(e for e in history if e["type"] == "WorkflowRetried")
    assert retried_event["data"]["reason"] == "key rotated"


async def test_rerun_over_http_runs_the_job_and_its_dependents_with_the_new_outputs(
    http: httpx.AsyncClient,  # noqa: F811
    clean_nats: NATS,
) -> None:
    wf = await start(http, TWO)
    early = await http.post(f"/api/workflows/{wf}/rerun", json={"from": "a"})
    assert early.status_code == 409 and "it is running" in early.json()["error"]
    for job, outputs in [("a", {"v": "1"}), ("b", {})]:
        claimed = await claim_eventually(http, "w", ["http"])
        assert claimed["job"]["job_id"] == job
        lease = claimed["lease"]["lease_id"]
        await http.post(f"/api/jobs/{lease}/complete", json={"outputs": outputs})
    await finished(EventStore(clean_nats), wf)

    missing = await http.post(f"/api/workflows/{wf}/rerun", json={})
    assert missing.status_code == 422 and "from" in missing.json()["error"]
    unknown = await http.post(f"/api/workflows/{wf}/rerun", json={"from": "zz"})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_job")
    rerun = await http.post(f"/api/workflows/{wf}/rerun", json={"from": "a", "reason": "v2"})
    assert rerun.status_code == 200, rerun.text
    assert rerun.json() == {
        "workflow_id": wf,
        "command": "rerun",
        "applied": True,
        "changed": True,
        "job": "a",
    }
    claimed = await claim_eventually(http, "w", ["http"])
    assert (claimed["job"]["job_id"], claimed["job"]["attempt"]) == ("a", 2)
    await http.post(
        f"/api/jobs/{claimed['lease']['lease_id']}/complete", json={"outputs": {"v": 2}}
    )
    claimed = await claim_eventually(http, "w", ["http"])
    assert (claimed["job"]["job_id"], claimed["job"]["command"]) == ("b", "echo got 2")
    await http.post(f"/api/jobs/{claimed['lease']['lease_id']}/complete", json={})

    async def succeeded_again() -> Any:
        history = (await http.get(f"/api/workflows/{wf}/history")).json()["events"]
        return [e["type"] for e in history].count("WorkflowSucceeded") == 2

    await assert_eventually(succeeded_again)
    history = (await http.get(f"/api/workflows/{wf}/history")).json()["events"]
    event = next(e for e in history if e["type"] == "WorkflowRerun")
    data = event["data"]
    assert (data["by"], data["reason"], data["from_job"], data["jobs"]) == (
        "http",
        "v2",
        "a",
        ["a", "b"],
    )


async def test_restart_over_http_starts_a_new_run_linked_to_the_old_one(
    http: httpx.AsyncClient,  # noqa: F811
    clean_nats: NATS,
) -> None:
    wf = await start(http, {"name": "two", "jobs": {"a": {"run": "x", "labels": ["http"]}}})
    early = await http.post(f"/api/workflows/{wf}/restart")
    assert early.status_code == 409 and "it is running" in early.json()["error"]
    claimed = await claim_eventually(http, "w", ["http"])
    await http.post(f"/api/jobs/{claimed['lease']['lease_id']}/fail", json={"retryable": False})
    await finished(EventStore(clean_nats), wf)

    restarted = await http.post(f"/api/workflows/{wf}/restart", json={"reason": "again"})
    assert restarted.status_code == 200, restarted.text
    body = restarted.json()
    new = body["restarted_as"]
    assert body == {
        "workflow_id": wf,
        "command": "restart",
        "applied": True,
        "changed": True,
        "job": None,
        "restarted_as": new,
    }
    claimed = await claim_eventually(http, "w", ["http"])
    assert (claimed["job"]["workflow_id"], claimed["job"]["job_id"]) == (new, "a")
    view = (await http.get(f"/api/workflows/{new}")).json()
    assert (view["status"], view["restarted_from"]) == ("running", wf)
    old = (await http.get(f"/api/workflows/{wf}")).json()
    assert (old["status"], old["restarted_as"]) == ("failed", new)
    missing = await http.post("/api/workflows/wf-none/restart")
    assert (missing.status_code, missing.json()["code"]) == (404, "unknown_workflow")
