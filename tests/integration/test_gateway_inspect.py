"""What the web UI reads beyond the status object, over real HTTP: a workflow's graph (edges and
the log position to follow events from), a job's claims and rejected results, queued label sets
and who serves them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS

from events.store import EventStore
from projections.projector import Projector
from tests.eventually import assert_eventually
from tests.gateway_harness import (
    claim_eventually,
    finished,
    running_engine,
    running_gateway,
    start,
)

DIAMOND = {
    "name": "diamond",
    "inputs": {"who": {"default": "world"}},
    "jobs": {
        "a": {"run": "echo ${{ inputs.who }}", "labels": ["http"]},
        "b": {"run": "b", "needs": ["a"], "labels": ["http"]},
        "c": {"run": "c", "needs": ["a"], "labels": ["http"], "if": "always()"},
        "d": {"run": "d", "needs": ["b"], "needs_any": ["c"], "labels": ["http"]},
    },
}


@pytest.fixture
async def http(clean_nats: NATS, nats_url: str) -> AsyncIterator[httpx.AsyncClient]:
    projector = Projector(clean_nats)
    await projector.start()
    try:
        async with (
            running_engine(clean_nats),
            running_gateway(nats_url) as gateway,
            httpx.AsyncClient(base_url=gateway.url, timeout=30) as client,
        ):
            yield client
    finally:
        await projector.stop()


async def test_the_graph_has_every_edge_and_the_position_to_follow_events_from(
    http: httpx.AsyncClient, clean_nats: NATS
) -> None:
    wf = await start(http, DIAMOND, inputs={"who": "you"})
    first = await claim_eventually(http, "w", ["http"])
    graph = (await http.get(f"/api/workflows/{wf}/graph")).json()
    assert [job["name"] for job in graph["jobs"]] == ["a", "b", "c", "d"]
    edges = {job["name"]: (job["needs"], job["needs_any"]) for job in graph["jobs"]}
    assert edges == {"a": ([], []), "b": (["a"], []), "c": (["a"], []), "d": (["b"], ["c"])}
    by_name = {job["name"]: job for job in graph["jobs"]}
    assert by_name["a"]["view"]["status"] == "running"
    assert by_name["a"]["run"] == "echo ${{ inputs.who }}"
    assert by_name["c"]["if"] == "always()"
    assert by_name["d"]["view"]["status"] == "pending"
    assert (graph["status"], graph["inputs"]) == ("running", {"who": "you"})
    history = (await http.get(f"/api/workflows/{wf}/history")).json()["events"]
    assert graph["seq"] == history[-1]["seq"]
    status = (await http.get(f"/api/workflows/{wf}")).json()
    assert {job["name"]: job["view"] for job in graph["jobs"]} == status["jobs"]

    # Following from the graph's position gives what came after it, and nothing before.
    await http.post(f"/api/jobs/{first['lease']['lease_id']}/complete", json={})
    headers = {"Last-Event-ID": str(graph["seq"])}
    async with http.stream(
        "GET", f"/api/events?workflow_id={wf}", headers=headers, timeout=15
    ) as events:
        lines = events.aiter_lines()
        seen: list[str] = []
        async for line in lines:
            if line.startswith("id: "):
                assert int(line[4:]) > graph["seq"]
            if line.startswith("data: ") and '"JobSucceeded"' in line:
                seen.append(line)
                break
    assert seen and '"actor":"job a"' in seen[0]
    missing = await http.get("/api/workflows/wf-none/graph")
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_workflow"


async def test_a_job_lists_every_claim_with_its_epoch_and_outcome_and_rejected_results(
    http: httpx.AsyncClient, clean_nats: NATS
) -> None:
    flaky = {"run": "x ${{ inputs.n }}", "labels": ["http"], "retry": {"max_attempts": 3}}
    wf = await start(http, {"name": "f", "inputs": {"n": {"default": 1}}, "jobs": {"flaky": flaky}})
    first = await claim_eventually(http, "gone", ["http"], ttl=1)
    # The first claim's lease runs out; another worker takes attempt 1 over with epoch 2.
    second = await claim_eventually(http, "w2", ["http"], ttl=30, wait=5)
    late = await http.post(f"/api/jobs/{first['lease']['lease_id']}/complete", json={})
    assert late.status_code == 409
    failed = await http.post(
        f"/api/jobs/{second['lease']['lease_id']}/fail", json={"error": "boom", "retryable": True}
    )
    assert failed.status_code == 200, failed.text
    third = await claim_eventually(http, "w3", ["http"])
    await http.post(f"/api/jobs/{third['lease']['lease_id']}/complete", json={"outputs": {"k": 1}})
    await finished(EventStore(clean_nats), wf)

    detail = (await http.get(f"/api/workflows/{wf}/jobs/flaky")).json()
    claims = [
        (c["attempt"], c["epoch"], c["worker_id"], c["outcome"], c["error"])
        for c in detail["claims"]
    ]
    assert claims == [
        (1, 1, "gone", "lost", None),
        (1, 2, "w2", "failed", "boom"),
        (2, 3, "w3", "succeeded", None),
    ]
    assert all(c["started_at"] for c in detail["claims"])
    assert [(r["epoch"], r["worker_id"], r["outcome"]) for r in detail["rejected"]] == [
        (1, "gone", "succeeded")
    ]
    assert detail["command"] == "x 1"
    assert detail["run"] == "x ${{ inputs.n }}"
    assert detail["view"]["status"] == "succeeded"
    assert detail["view"]["outputs"] == {"k": "1"}
    unknown = await http.get(f"/api/workflows/{wf}/jobs/nope")
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_job"


async def test_queued_label_sets_say_which_live_workers_serve_them(
    http: httpx.AsyncClient,
) -> None:
    await start(
        http,
        {
            "name": "waits",
            "jobs": {
                "train": {"run": "t", "labels": ["gpu"]},
                "eval": {"run": "e", "labels": ["gpu"]},
                "build": {"run": "b", "labels": ["http"]},
                "report": {"uses": "summarise"},
            },
        },
    )
    registered = await http.post(
        "/api/workers/register", json={"worker_id": "cpu-1", "labels": ["http", "linux"]}
    )
    assert registered.status_code == 200

    async def queued() -> Any:
        body = (await http.get("/api/label-sets")).json()
        return body if sum(ls["queued"] for ls in body["label_sets"]) == 4 else None

    body = await assert_eventually(queued, timeout=15)
    found = {tuple(ls["requirements"]): (ls["queued"], ls["workers"]) for ls in body["label_sets"]}
    assert found == {
        ("gpu",): (2, []),
        ("http",): (1, ["cpu-1"]),
        ("@summarise",): (1, []),
    }
    assert body["label_sets"][0]["requirements"] == ["gpu"]  # most queued first
    assert body["complete"] is True and body["workflows_scanned"] == 1


async def test_the_openapi_document_describes_the_ui_reads(http: httpx.AsyncClient) -> None:
    doc = (await http.get("/openapi.json")).json()
    paths = doc["paths"]
    assert "/api/workflows/{workflow_id}/graph" in paths
    assert "/api/workflows/{workflow_id}/jobs/{job}" in paths
    assert "/api/label-sets" in paths
    assert {"GraphOut", "JobDetailOut", "LabelSetsOut", "ClaimRecord"} <= set(
        doc["components"]["schemas"]
    )
