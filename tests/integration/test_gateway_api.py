"""The client API over real HTTP: start, status, list, history, cancel, logs, streams, workers,
dead letters, lag; JSON errors; bearer tokens per role; the OpenAPI document."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from nats.aio.client import Client as NATS

from events import subjects
from events.store import EventStore
from gateway.auth import Role, Tokens
from gateway.settings import GatewaySettings
from projections.projector import Projector
from tests.eventually import assert_eventually
from tests.gateway_harness import (
    claim,
    claim_eventually,
    finished,
    running_engine,
    running_gateway,
    start,
)

HELLO = {"name": "hello", "jobs": {"greet": {"run": "echo hi", "labels": ["http"]}}}
YAML = """\
name: from-yaml
inputs:
  who: {default: world}
jobs:
  greet:
    run: echo hello ${{ inputs.who }}
    labels: [http]
"""


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


async def run_to_end(http: httpx.AsyncClient, nc: NATS, workflow_id: str) -> None:
    claimed = await claim_eventually(http, "w", ["http"])
    lease_id = claimed["lease"]["lease_id"]
    chunk = {"data": f"line of {workflow_id}", "stream": "stdout"}
    await http.post(f"/api/jobs/{lease_id}/logs", json={"chunks": [chunk]})
    await http.post(f"/api/jobs/{lease_id}/complete", json={})
    await finished(EventStore(nc), workflow_id)


async def test_start_json_or_yaml_with_idempotency_keys(
    http: httpx.AsyncClient, clean_nats: NATS
) -> None:
    first = await http.post(
        "/api/workflows", json={"workflow": HELLO, "idempotency_key": "nightly-1"}
    )
    assert first.status_code == 201, first.text
    again = await http.post(
        "/api/workflows", json={"workflow": HELLO, "idempotency_key": "nightly-1"}
    )
    assert again.status_code == 200
    assert again.json()["workflow_id"] == first.json()["workflow_id"]
    assert again.json()["created"] is False
    from_yaml = await http.post(
        "/api/workflows?input=who=yaml",
        content=YAML,
        headers={"Content-Type": "application/yaml"},
    )
    assert from_yaml.status_code == 201, from_yaml.text
    wf = from_yaml.json()["workflow_id"]
    assert from_yaml.json()["url"] == f"/api/workflows/{wf}"
    claimed = await claim_eventually(http, "w", ["http"])
    commands = {claimed["job"]["command"]}
    await http.post(f"/api/jobs/{claimed['lease']['lease_id']}/complete", json={})
    claimed = await claim_eventually(http, "w", ["http"])
    commands.add(claimed["job"]["command"])
    assert commands == {"echo hi", "echo hello yaml"}


async def test_an_invalid_workflow_is_422_with_every_located_problem(
    http: httpx.AsyncClient,
) -> None:
    broken = "name: x\njobs:\n  a:\n    needs: [zz]\n    run: true\n    retry: {max_attempts: 0}\n"
    answer = await http.post(
        "/api/workflows", content=broken, headers={"Content-Type": "text/yaml"}
    )
    assert answer.status_code == 422
    body = answer.json()
    assert body["code"] == "invalid_workflow"
    located = [problem.split(" ", 1)[0] for problem in body["problems"]]
    assert located == ["body:4", "body:5", "body:6"], body["problems"]  # file:line, as the CLI
    assert "unknown job 'zz'" in body["problems"][0]
    wrong_input = await http.post("/api/workflows", json={"workflow": HELLO, "inputs": {"nope": 1}})
    assert wrong_input.status_code == 422
    assert "nope" in wrong_input.json()["error"]


async def test_status_history_logs_and_the_workflow_graph_aliases(
    http: httpx.AsyncClient, clean_nats: NATS
) -> None:
    wf = await start(http, HELLO)
    await run_to_end(http, clean_nats, wf)
    status = (await http.get(f"/api/workflows/{wf}")).json()
    assert status["status"] == "succeeded"
    assert (await http.get(f"/api/workflows/{wf}/status")).json() == status
    events = (await http.get(f"/api/workflows/{wf}/history")).json()["events"]
    assert events[0]["type"] == "WorkflowStarted"
    assert events[-1]["type"] == "WorkflowSucceeded"
    assert all(e["seq"] > 0 and e["time"] and e["actor"] for e in events)
    lines = (await http.get(f"/api/workflows/{wf}/jobs/greet/logs")).json()["lines"]
    assert [line["line"] for line in lines] == [f"line of {wf}"]
    missing = await http.get(f"/api/workflows/{wf}/jobs/nope/logs")
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_job"
    unknown = await http.get("/api/workflows/wf-none/history")
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_workflow"


async def test_list_filters_and_pages_with_a_cursor(
    http: httpx.AsyncClient, clean_nats: NATS
) -> None:
    ids = [await start(http, {**HELLO, "name": "listed"}) for _ in range(5)]

    async def projected() -> Any:
        rows = (await http.get("/api/workflows?name=listed&limit=100")).json()["workflows"]
        return rows if len(rows) == 5 else None

    rows = await assert_eventually(projected)
    assert {row["workflow_id"] for row in rows} == set(ids)
    seen: list[str] = []
    url: str | None = "/api/workflows?name=listed&limit=2"
    while url is not None:
        page = (await http.get(url)).json()
        assert len(page["workflows"]) <= 2
        seen += [row["workflow_id"] for row in page["workflows"]]
        url = page["next"]
    assert seen == [row["workflow_id"] for row in rows]  # newest first, no gap, no repeat
    running = (await http.get("/api/workflows?status=running&name=listed")).json()
    assert len(running["workflows"]) == 5
    bad = await http.get("/api/workflows?status=sleeping")
    assert bad.status_code == 422 and "sleeping" in bad.json()["error"]
    assert (await http.get("/api/workflows?cursor=garbage")).status_code == 422
    assert (await http.get("/api/workflows?limit=0")).status_code == 422


async def test_log_and_event_streams_replay_then_follow(
    http: httpx.AsyncClient, clean_nats: NATS
) -> None:
    wf = await start(http, HELLO)
    claimed = await claim_eventually(http, "w", ["http"])
    lease_id = claimed["lease"]["lease_id"]
    await http.post(f"/api/jobs/{lease_id}/logs", json={"chunks": [{"data": "early"}]})
    received: list[tuple[str, dict[str, Any]]] = []

    async def follow(url: str, until: str) -> None:
        async with http.stream("GET", url) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            event = "message"
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data = orjson.loads(line.removeprefix("data: "))
                    received.append((event, data))
                    if event == until or data.get("type") == until:
                        return
                    event = "message"

    logs = asyncio.create_task(follow(f"/api/workflows/{wf}/jobs/greet/logs?follow=1", "end"))
    events = asyncio.create_task(
        follow(f"/api/events?workflow_id={wf}&from_start=1", "WorkflowSucceeded")
    )
    await asyncio.sleep(0.3)
    await http.post(f"/api/jobs/{lease_id}/logs", json={"chunks": [{"data": "late"}]})
    await http.post(f"/api/jobs/{lease_id}/complete", json={})
    await asyncio.wait_for(asyncio.gather(logs, events), 30)
    lines = [data["line"] for event, data in received if "line" in data]
    assert lines == ["early", "late"]
    assert ("end", {"job": "greet", "status": "succeeded"}) in received
    types = [data["type"] for _, data in received if "type" in data]
    assert types[0] == "WorkflowStarted" and types[-1] == "WorkflowSucceeded"
    bad = await http.get("/api/events?type=NoSuchEvent")
    assert bad.status_code == 422 and "NoSuchEvent" in bad.json()["error"]
    alias = await http.get(f"/api/workflows/{wf}/jobs/greet/logs/stream")
    assert "data: " in alias.text and "event: end" in alias.text  # the job ended: the stream too


async def test_cancel_workers_lag_and_dead_letters(
    http: httpx.AsyncClient, clean_nats: NATS
) -> None:
    wf = await start(http, HELLO)
    registered = await http.post(
        "/api/workers/register", json={"worker_id": "http-w", "labels": ["http"]}
    )
    assert registered.status_code == 200
    workers = (await http.get("/api/workers")).json()["workers"]
    assert [(w["worker_id"], w["labels"]) for w in workers] == [("http-w", ["http"])]
    cancel = await http.post(f"/api/workflows/{wf}/cancel", json={"reason": "not today"})
    assert cancel.status_code == 202
    history = await finished(EventStore(clean_nats), wf)
    assert history[-1].event.event_type == "WorkflowCancelled"
    assert (await http.post("/api/workflows/wf-none/cancel")).status_code == 404
    assert isinstance((await http.get("/api/lag")).json()["lag"], int)
    garbage = subjects.command("start", "wf-garbage")
    await clean_nats.jetstream().publish(garbage, b"not json")

    async def dead() -> Any:
        return (await http.get("/api/dead-letters")).json()["dead_letters"]

    letters = await assert_eventually(dead)
    assert letters[0]["subject"] == garbage


async def test_bad_requests_get_json_errors_and_change_nothing(
    http: httpx.AsyncClient, clean_nats: NATS
) -> None:
    malformed = await http.post("/api/jobs/claim", content=b'{"worker_id": ')
    assert malformed.status_code == 400 and malformed.json()["code"] == "malformed_json"
    huge = await http.post("/api/workflows", content=b"x" * (2 << 20))
    assert huge.status_code == 413 and huge.json()["code"] == "body_too_large"
    invalid = await http.post(
        "/api/jobs/claim", json={"worker_id": "a.b", "labels": ["ok", "*"], "lease_ttl_secs": -1}
    )
    assert invalid.status_code == 422
    assert [p.split(":")[0] for p in invalid.json()["problems"]] == [
        "worker_id",
        "labels.1",
        "lease_ttl_secs",
    ]
    assert (await http.post("/api/jobs/nonsense/heartbeat")).status_code == 404
    wf = await start(http, HELLO)
    claimed = await claim_eventually(http, "w", ["http"])
    lease_id = claimed["lease"]["lease_id"]
    forged = lease_id[:-2] + ("AA" if not lease_id.endswith("AA") else "BB")
    answer = await http.post(f"/api/jobs/{forged}/complete", json={})
    assert answer.status_code == 404 and answer.json()["code"] == "unknown_lease"
    assert (await http.get("/api/nowhere")).json()["code"] == "not_found"
    assert (await http.get("/api/jobs/claim")).status_code == 405
    done = await http.post(f"/api/jobs/{lease_id}/complete", json={})
    assert done.status_code == 200  # the forged id changed nothing
    again = await http.post(f"/api/jobs/{lease_id}/complete", json={})
    assert again.status_code == 200  # the same result once more: recorded once, not rejected
    history = await finished(EventStore(clean_nats), wf)
    assert [r.event.event_type for r in history].count("JobSucceeded") == 1
    assert "JobResultRejected" not in [r.event.event_type for r in history]


async def test_tokens_per_role(clean_nats: NATS, nats_url: str) -> None:
    tokens = Tokens(
        {"w-token-123": Role.WORKER, "c-token-123": Role.CLIENT, "a-token-123": Role.ADMIN}
    )
    settings = GatewaySettings(port=0, tokens=tokens)
    async with (
        running_engine(clean_nats),
        running_gateway(nats_url, settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        bodies = {
            "/api/workflows": {"workflow": HELLO},
            "/api/jobs/claim": {"worker_id": "w", "labels": ["http"]},
        }
        cases = [  # (method, path, token, status)
            ("POST", "/api/workflows", None, 401),
            ("POST", "/api/workflows", "wrong-token", 401),
            ("POST", "/api/workflows", "w-token-123", 403),
            ("POST", "/api/jobs/claim", "c-token-123", 403),
            ("GET", "/api/dead-letters", "c-token-123", 403),
            ("POST", "/api/workflows", "c-token-123", 201),
            ("GET", "/api/workflows/wf-none", "c-token-123", 404),
            ("POST", "/api/jobs/claim", "w-token-123", 200),
            ("GET", "/api/dead-letters", "a-token-123", 200),
            ("POST", "/api/jobs/claim", "a-token-123", 200),
            ("POST", "/api/workflows", "a-token-123", 201),
        ]
        for method, path, token, status in cases:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            answer = await http.request(method, path, json=bodies.get(path), headers=headers)
            assert answer.status_code == status, (method, path, token, answer.text)
            if status == 401:
                assert answer.headers["www-authenticate"] == "Bearer"
                assert answer.json()["code"] == "unauthenticated"
        assert (await http.get("/healthz")).status_code == 200
        doc = (await http.get("/openapi.json")).json()
        assert "bearer" in doc["components"]["securitySchemes"]


async def test_the_openapi_document_and_reference_page_cover_every_route(
    http: httpx.AsyncClient,
) -> None:
    doc = (await http.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    for path in (
        "/api/workers/register",
        "/api/jobs/claim",
        "/api/jobs/{lease_id}/heartbeat",
        "/api/jobs/{lease_id}/logs",
        "/api/jobs/{lease_id}/complete",
        "/api/jobs/{lease_id}/fail",
        "/api/jobs/{workflow_id}/{job}/cancelled",
        "/api/workflows",
        "/api/workflows/{workflow_id}",
        "/api/events",
    ):
        assert path in doc["paths"], path
    claim = doc["paths"]["/api/jobs/claim"]["post"]
    assert claim["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ClaimBody"
    )
    assert "ClaimOut" in doc["components"]["schemas"]
    page = await http.get("/docs")
    assert page.headers["content-type"].startswith("text/html")
    assert "/api/jobs/{lease_id}/heartbeat" in page.text


async def test_a_namespace_by_header_or_query_parameter(
    http: httpx.AsyncClient, clean_nats: NATS
) -> None:
    team = {"Jetwork-Namespace": "team-a"}
    started = await http.post("/api/workflows", json={"workflow": HELLO}, headers=team)
    assert started.status_code == 201, started.text
    wf = started.json()["workflow_id"]
    assert (await http.get(f"/api/workflows/{wf}")).status_code == 404  # not the default's
    shown = await http.get(f"/api/workflows/{wf}?namespace=team-a")
    assert shown.status_code == 200 and shown.json()["namespace"] == "team-a"

    async def listed() -> Any:
        rows = (await http.get("/api/workflows", headers=team)).json()["workflows"]
        return rows if [r["workflow_id"] for r in rows] == [wf] else None

    await assert_eventually(listed)
    default_rows = (await http.get("/api/workflows")).json()["workflows"]
    assert wf not in [r["workflow_id"] for r in default_rows]
    # An HTTP worker claims the namespace's jobs only when it names the namespace.
    assert await claim(http, "w-default", ["http"]) is None

    async def team_claim() -> Any:
        body = {"worker_id": "w-team", "labels": ["http"], "lease_ttl_secs": 30}
        return (await http.post("/api/jobs/claim?namespace=team-a", json=body)).json()

    claimed = await assert_eventually(team_claim, timeout=15)
    assert claimed["lease"]["workflow_id"] == wf

    async def team_workers() -> Any:
        found = (await http.get("/api/workers", headers=team)).json()["workers"]
        return [w["worker_id"] for w in found] == ["w-team"]

    await assert_eventually(team_workers, timeout=15)  # written by the presence refresh
    default_workers = (await http.get("/api/workers")).json()["workers"]
    assert "w-team" not in [w["worker_id"] for w in default_workers]
    bad = await http.get("/api/workflows?namespace=no.good")
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_namespace"
    key = {"workflow": HELLO, "idempotency_key": "k-1"}
    first = await http.post("/api/workflows", json=key, headers=team)
    other = await http.post("/api/workflows", json=key)
    assert first.json()["workflow_id"] != other.json()["workflow_id"]


async def test_http_workers_are_bound_by_their_namespaces_job_quota(
    http: httpx.AsyncClient, clean_nats: NATS
) -> None:
    from sdk.client import Client

    await Client(clean_nats).set_quota("team-q", max_running_jobs=1)
    two = {"name": "two", "jobs": {"a": {"run": "a", "labels": ["http"]},
                                   "b": {"run": "b", "labels": ["http"]}}}  # fmt: skip
    started = await http.post(
        "/api/workflows", json={"workflow": two}, headers={"Jetwork-Namespace": "team-q"}
    )
    assert started.status_code == 201, started.text
    body = {"worker_id": "w-q", "labels": ["http"], "lease_ttl_secs": 30}

    async def claimed() -> Any:
        return (await http.post("/api/jobs/claim?namespace=team-q", json=body)).json()

    first = await assert_eventually(claimed, timeout=15)
    # The namespace runs its quota of jobs: the other is held back while the first runs.
    for _ in range(3):
        assert await claimed() is None
    done = await http.post(f"/api/jobs/{first['lease']['lease_id']}/complete", json={})
    assert done.status_code == 200, done.text
    second = await assert_eventually(claimed, timeout=15)
    assert {first["job"]["job_id"], second["job"]["job_id"]} == {"a", "b"}
    await http.post(f"/api/jobs/{second['lease']['lease_id']}/complete", json={})
    await Client(clean_nats).delete_quota("team-q")


async def test_the_event_stream_is_the_namespaces(http: httpx.AsyncClient) -> None:
    team_a = {"Jetwork-Namespace": "team-a"}
    received: list[dict[str, Any]] = []

    async def collect(url: str, headers: dict[str, str]) -> None:
        async with http.stream("GET", url, headers=headers) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    received.append(orjson.loads(line.removeprefix("data: ")))

    async def start_in(namespace: str | None) -> str:
        headers = {} if namespace is None else {"Jetwork-Namespace": namespace}
        answer = await http.post("/api/workflows", json={"workflow": HELLO}, headers=headers)
        assert answer.status_code == 201, answer.text
        wf: str = answer.json()["workflow_id"]

        async def queued() -> bool:  # started, its job's JobQueued in the log
            shown = await http.get(f"/api/workflows/{wf}", headers=headers)
            return shown.status_code == 200 and shown.json()["jobs"]["greet"]["status"] == "queued"

        await assert_eventually(queued, timeout=15)
        return wf

    def workflows_seen() -> set[str]:
        return {each["subject"].split(".")[2] for each in received}

    live = asyncio.create_task(collect("/api/events", team_a))
    try:
        warm = await start_in("team-a")  # the live stream is open once it has seen this one

        async def warmed() -> bool:
            return warm in workflows_seen()

        await assert_eventually(warmed, timeout=15)
        others = {await start_in("team-b"), await start_in(None)}
        last = await start_in("team-a")  # its events come after the others' in the log

        async def seen_last() -> bool:
            return any(
                e["subject"].split(".")[2] == last and e["type"] == "JobQueued" for e in received
            )

        await assert_eventually(seen_last, timeout=15)
    finally:
        live.cancel()
        await asyncio.gather(live, return_exceptions=True)
    assert workflows_seen() == {warm, last}

    # From the start, by header or query parameter: the same namespace's events only.
    for url, headers in (
        ("/api/events?from_start=1", team_a),
        ("/api/events?from_start=1&namespace=team-a", {}),
    ):
        received.clear()
        replay = asyncio.create_task(collect(url, headers))
        try:
            await assert_eventually(seen_last, timeout=15)
        finally:
            replay.cancel()
            await asyncio.gather(replay, return_exceptions=True)
        assert workflows_seen() == {warm, last}, url
    assert not others & {warm, last}
