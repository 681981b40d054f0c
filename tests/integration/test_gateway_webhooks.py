"""Webhooks over real HTTP on loopback: a job waiting for ``POST /api/hooks/<token>``, its URL in
the status, matching and non-matching bodies (refused with why, counted), a forged token, a
redelivery, with the engine and a projector running (the ``http`` fixture)."""

from __future__ import annotations

from typing import Any

import httpx
from nats.aio.client import Client as NATS

from events.store import EventStore
from tests.eventually import assert_eventually
from tests.gateway_harness import finished, start
from tests.integration.test_gateway_api import http  # noqa: F401  (the fixture)

PAY = {
    "name": "pay",
    "inputs": {"order": {"required": True}},
    "jobs": {
        "paid": {
            "wait_for": {
                "webhook": {"match": {"type": "payment_received", "order": "${{ inputs.order }}"}},
                "timeout": "1h",
            }
        }
    },
}


def refused(metrics: str, reason: str) -> float:
    prefix = f'jetwork_webhooks_refused_total{{reason="{reason}"}} '
    lines = [line for line in metrics.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


async def test_a_matching_webhook_resumes_the_job_and_others_are_refused_with_why(
    http: httpx.AsyncClient,  # noqa: F811
    clean_nats: NATS,
) -> None:
    wf = await start(http, PAY, inputs={"order": "A-7"})

    async def hook_shown() -> Any:
        answer = await http.get(f"/api/workflows/{wf}")
        if answer.status_code == 409:  # not_started: a 201 does not wait for the engine's start
            return False
        job = answer.json()["jobs"]["paid"]
        wait = job["wait"]
        return job["status"] == "waiting" and wait["hook"] and wait

    wait = await assert_eventually(hook_shown)
    assert wait["match"] == {"type": "payment_received", "order": "A-7"}
    url = wait["hook"]
    assert url.startswith("/api/hooks/")
    before = (await http.get("/metrics")).text

    wrong = await http.post(url, json={"type": "payment_received", "order": "B-1"})
    assert wrong.status_code == 422
    assert wrong.json() == {
        "error": 'the body does not match: order is "B-1", expected "A-7"',
        "code": "no_match",
        "status": 422,
    }
    forged = await http.post(url[:-3] + "AAA", json={})
    assert (forged.status_code, forged.json()["code"]) == (404, "unknown_hook")
    not_object = await http.post(url, json=[1])
    assert (not_object.status_code, not_object.json()["code"]) == (422, "invalid_body")
    after = (await http.get("/metrics")).text
    assert refused(after, "no_match") == refused(before, "no_match") + 1
    assert refused(after, "unknown_hook") == refused(before, "unknown_hook") + 1

    body = {"type": "payment_received", "order": "A-7", "amount": 12}
    ok = await http.post(url, json=body)
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"workflow_id": wf, "job": "paid", "applied": True, "changed": True}
    await finished(EventStore(clean_nats), wf)
    again = await http.post(url, json=body)
    assert (again.status_code, again.json()["changed"]) == (200, False)
    over = await http.post(url, json={**body, "amount": 13})
    assert over.status_code == 409 and "it has ended (succeeded)" in over.json()["error"]
    view = (await http.get(f"/api/workflows/{wf}")).json()
    assert view["status"] == "succeeded"
    assert view["jobs"]["paid"]["outputs"] == {
        "type": "payment_received",
        "order": "A-7",
        "amount": "12",
    }
