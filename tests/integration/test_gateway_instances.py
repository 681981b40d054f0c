"""Fan-out instances over real HTTP: an instance's job page (status, attempts, outputs, claims,
logs) and whose instance it is, the fanned-out job's page listing its instances, the graph
carrying their views, skipping one, and the queued label sets counting them."""

from __future__ import annotations

import json
from typing import Any

import httpx
from nats.aio.client import Client as NATS

from events.store import EventStore
from tests.eventually import assert_eventually
from tests.gateway_harness import claim_eventually, finished, start
from tests.integration.test_gateway_inspect import http  # noqa: F401  (fixture)

MATRIX = {
    "name": "mx",
    "jobs": {
        "t": {
            "strategy": {"matrix": {"n": [1, 2, 3]}, "max_parallel": 2, "fail_fast": False},
            "labels": ["http"],
            "run": "echo ${{ matrix.n }}",
        },
        "after": {"needs": ["t"], "labels": ["later"], "run": "echo ${{ needs.t.outputs.k }}"},
    },
}


async def job_page(http: httpx.AsyncClient, wf: str, job: str) -> Any:  # noqa: F811
    response = await http.get(f"/api/workflows/{wf}/jobs/{job}")
    assert response.status_code == 200, response.text
    return response.json()


async def test_an_instance_has_a_job_page_and_its_fanned_out_job_lists_it(
    http: httpx.AsyncClient,  # noqa: F811
    clean_nats: NATS,
) -> None:
    wf = await start(http, MATRIX)
    first = await claim_eventually(http, "w1", ["http"])
    assert first["job"]["job_id"] == "t-0" and first["job"]["command"] == "echo 1"
    lease = first["lease"]["lease_id"]
    logged = await http.post(
        f"/api/jobs/{lease}/logs", json={"chunks": [{"sequence": 1, "data": "one\n"}]}
    )
    assert logged.status_code == 200, logged.text
    done = await http.post(f"/api/jobs/{lease}/complete", json={"outputs": {"k": "first"}})
    assert done.status_code == 200, done.text

    async def settled() -> Any:
        page = await job_page(http, wf, "t-0")
        return page if page["view"]["status"] == "succeeded" else None

    page = await assert_eventually(settled, message="t-0 never succeeded")
    assert page["instance_of"] == {"job": "t", "index": 0, "item": {"n": 1}}
    assert (page["run"], page["command"], page["labels"]) == (
        "echo ${{ matrix.n }}",
        "echo 1",
        ["http"],
    )
    assert page["view"]["outputs"] == {"k": "first"} and page["view"]["attempts"] == 1
    assert [(c["attempt"], c["worker_id"], c["outcome"]) for c in page["claims"]] == [
        (1, "w1", "succeeded")
    ]
    assert page["instances"] is None
    assert page["logs"] == {
        "lines": f"/api/workflows/{wf}/jobs/t-0/logs",
        "stream": f"/api/workflows/{wf}/jobs/t-0/logs/stream",
    }

    async def logged_line() -> Any:
        lines = (await http.get(page["logs"]["lines"])).json()["lines"]
        return lines or None

    lines = await assert_eventually(logged_line, message="t-0's log line never showed")
    assert [line["line"] for line in lines] == ["one"]

    parent = await job_page(http, wf, "t")
    assert parent["instance_of"] is None
    assert [(r["name"], r["index"], r["item"]) for r in parent["instances"]] == [
        ("t-0", 0, {"n": 1}),
        ("t-1", 1, {"n": 2}),
        ("t-2", 2, {"n": 3}),
    ]
    assert parent["instances"][0]["status"] == "succeeded"
    assert sum(parent["instance_counts"].values()) == 3
    assert parent["logs"]["lines"] == f"/api/workflows/{wf}/jobs/t/logs"

    graph = (await http.get(f"/api/workflows/{wf}/graph")).json()
    by_name = {job["name"]: job for job in graph["jobs"]}
    assert list(by_name) == ["t", "after"]  # the instances are not nodes of the definition
    assert by_name["t"]["instances"][0]["status"] == "succeeded"
    assert by_name["t"]["instances"][0]["outputs"] == {"k": "first"}
    assert by_name["after"]["instances"] is None

    unknown = await http.get(f"/api/workflows/{wf}/jobs/t-3")
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_job"
    unknown = await http.get(f"/api/workflows/{wf}/jobs/after-0")
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_job"


async def test_skipping_an_instance_over_http_fills_its_slot(
    http: httpx.AsyncClient,  # noqa: F811
    clean_nats: NATS,
) -> None:
    wf = await start(http, MATRIX)
    first = await claim_eventually(http, "w1", ["http"])  # t-0; t-1 queued, t-2 not yet

    async def queued_label_sets() -> Any:
        body = (await http.get("/api/label-sets")).json()
        return body if body["label_sets"] else None

    body = await assert_eventually(queued_label_sets, message="no queued label set")
    assert [(ls["requirements"], ls["queued"]) for ls in body["label_sets"]] == [(["http"], 1)]

    refused = await http.post(f"/api/workflows/{wf}/jobs/t-0/skip", json={})
    assert refused.status_code == 409 and "job 't-0' is running" in refused.json()["error"]
    skipped = await http.post(
        f"/api/workflows/{wf}/jobs/t-2/skip", json={"outputs": {"k": "by hand"}, "by": "ops"}
    )
    assert skipped.status_code == 200, skipped.text
    assert skipped.json()["changed"] is True
    await http.post(
        f"/api/jobs/{first['lease']['lease_id']}/complete", json={"outputs": {"k": "0"}}
    )
    second = await claim_eventually(http, "w1", ["http"])
    assert second["job"]["job_id"] == "t-1"  # t-2 was skipped before its turn: passed over
    await http.post(
        f"/api/jobs/{second['lease']['lease_id']}/complete", json={"outputs": {"k": "1"}}
    )

    async def fanned_in() -> Any:
        page = await job_page(http, wf, "t")
        return page if page["view"]["status"] == "succeeded" else None

    page = await assert_eventually(fanned_in, message="t never fanned in")
    assert json.loads(page["view"]["outputs"]["k"]) == ["0", "1", "by hand"]
    assert page["instance_counts"] == {"succeeded": 2, "skipped": 1}
    skipped_page = await job_page(http, wf, "t-2")
    assert skipped_page["view"]["status"] == "skipped"
    assert skipped_page["view"]["reason"] == "skipped by ops"
    assert skipped_page["claims"] == []
    after = await claim_eventually(http, "w2", ["later"])
    assert after["job"]["command"] == 'echo ["0","1","by hand"]'
    await http.post(f"/api/jobs/{after['lease']['lease_id']}/complete", json={})
    await finished(EventStore(clean_nats), wf)
