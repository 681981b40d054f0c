"""``POST /api/workflows/{id}/vars`` over real HTTP: the answer, ``vars`` in the status, the job
queued next reading them, the refusal on an ended workflow."""

from __future__ import annotations

import httpx

from tests.eventually import assert_eventually
from tests.gateway_harness import claim_eventually, start
from tests.integration.test_gateway_api import http  # noqa: F401  (the fixture)

TWO = {
    "name": "two",
    "vars": {"region": "eu"},
    "jobs": {
        "a": {"run": "echo a", "labels": ["http"]},
        "b": {"needs": ["a"], "run": "echo ${{ vars.region }}", "labels": ["http"]},
    },
}


async def test_set_vars_over_http(http: httpx.AsyncClient) -> None:  # noqa: F811
    wf = await start(http, TWO)
    a = await claim_eventually(http, "w", ["http"])
    answer = await http.post(f"/api/workflows/{wf}/vars", json={"values": {"region": "us"}})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "workflow_id": wf,
        "command": "set",
        "applied": True,
        "changed": True,
        "job": None,
    }

    async def shows_vars() -> bool:
        return bool((await http.get(f"/api/workflows/{wf}")).json()["vars"] == {"region": "us"})

    await assert_eventually(shows_vars)
    bad = await http.post(f"/api/workflows/{wf}/vars", json={"values": {"a-b": 1}})
    assert bad.status_code == 409 and "'a-b' is not a variable name" in bad.text, bad.text
    await http.post(f"/api/jobs/{a['lease']['lease_id']}/complete", json={})
    b = await claim_eventually(http, "w", ["http"])
    assert b["job"]["command"] == "echo us", b
    await http.post(f"/api/jobs/{b['lease']['lease_id']}/complete", json={})

    async def refused_once_ended() -> bool:
        late = await http.post(f"/api/workflows/{wf}/vars", json={"values": {"region": "ap"}})
        return late.status_code == 409 and "it has ended" in late.text

    await assert_eventually(refused_once_ended)
