"""Signals over real HTTP on loopback: ``POST /api/workflows/{id}/signals/{name}``, with the
engine and a projector running (the ``http`` fixture)."""

from __future__ import annotations

from typing import Any

import httpx
from nats.aio.client import Client as NATS

from events.store import EventStore
from tests.eventually import assert_eventually
from tests.gateway_harness import finished, start
from tests.integration.test_gateway_api import http  # noqa: F401  (the fixture)

APPROVAL = {
    "name": "approval",
    "jobs": {"approve": {"wait_for": {"signal": "approve", "timeout": "1h"}}},
}


async def test_a_signal_over_http_resumes_the_waiting_job(
    http: httpx.AsyncClient,  # noqa: F811
    clean_nats: NATS,
) -> None:
    wf = await start(http, APPROVAL)

    async def waiting() -> Any:
        answer = await http.get(f"/api/workflows/{wf}")
        if answer.status_code == 409:  # not_started: a 201 does not wait for the engine's start
            return False
        job = answer.json()["jobs"]["approve"]
        return job["status"] == "waiting" and job["wait"]["signal"] == "approve"

    await assert_eventually(waiting)
    bad = await http.post(f"/api/workflows/{wf}/signals/approve", json={"data": [1]})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_body")
    wrong = await http.post(f"/api/workflows/{wf}/signals/nope", json={})
    assert wrong.status_code == 409
    assert "no job of it waits for signal 'nope'" in wrong.json()["error"]

    body = {"data": {"by": "ann", "n": 2}, "signal_id": "http-1"}
    sent = await http.post(f"/api/workflows/{wf}/signals/approve", json=body)
    assert sent.status_code == 200, sent.text
    assert sent.json() == {
        "workflow_id": wf,
        "command": "signal",
        "signal": "approve",
        "applied": True,
        "changed": True,
    }
    await finished(EventStore(clean_nats), wf)
    again = await http.post(f"/api/workflows/{wf}/signals/approve", json=body)
    assert (again.status_code, again.json()["changed"]) == (200, False)
    view = (await http.get(f"/api/workflows/{wf}")).json()
    assert view["status"] == "succeeded"
    assert view["jobs"]["approve"]["outputs"] == {"by": "ann", "n": "2"}
    history = (await http.get(f"/api/workflows/{wf}/history")).json()["events"]
    assert [e["type"] for e in history if e["type"].startswith("Signal")] == [
        "SignalReceived",
        "SignalConsumed",
    ]

    ended = await http.post(f"/api/workflows/{wf}/signals/approve", json={})
    assert ended.status_code == 409 and "it has ended (succeeded)" in ended.json()["error"]
    missing = await http.post("/api/workflows/wf-none/signals/approve", json={})
    assert (missing.status_code, missing.json()["code"]) == (404, "unknown_workflow")
