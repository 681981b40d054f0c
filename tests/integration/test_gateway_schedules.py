"""Schedules over real HTTP: add (JSON or YAML), list, show, pause, resume, delete; the runs a
ticker starts for a schedule added over HTTP; every bad input a located 422; roles; OpenAPI."""

from __future__ import annotations

import httpx
from nats.aio.client import Client as NATS

from actors.scheduler import Ticker
from events import subjects
from events.catalog import WorkflowStarted
from events.store import EventStore
from gateway.auth import Role, Tokens
from gateway.settings import GatewaySettings
from tests.eventually import assert_eventually
from tests.gateway_harness import running_gateway
from tests.integration.test_gateway_api import http  # noqa: F401  (the fixture)

NIGHTLY = {
    "name": "nightly",
    "schedule": [{"cron": "30 2 * * *", "timezone": "Europe/Berlin"}],
    "inputs": {"target": {"default": "staging"}, "count": {"type": "integer", "default": 1}},
    "jobs": {"a": {"run": "echo ${{ inputs.target }}", "labels": ["http"]}},
}
EVERY_YAML = (
    "name: often\nschedule:\n  - every: 1s\ninputs:\n  count: {type: integer}\n"
    "jobs:\n  a: {run: echo, labels: [http]}\n"
)


async def test_add_list_show_pause_resume_delete(http: httpx.AsyncClient) -> None:  # noqa: F811
    assert (await http.get("/api/schedules")).json() == {"schedules": []}
    added = await http.post(
        "/api/schedules", json={"workflow": NIGHTLY, "inputs": {"target": "prod"}}
    )
    assert added.status_code == 201, added.text
    entry = added.json()
    assert (entry["name"], entry["inputs"], entry["paused"], entry["changed"]) == (
        "nightly",
        {"target": "prod"},
        False,
        True,
    )
    assert entry["rules"][0]["timezone"] == "Europe/Berlin" and entry["next_tick"] is not None
    again = await http.post(
        "/api/schedules", json={"workflow": NIGHTLY, "inputs": {"target": "prod"}}
    )
    assert (again.status_code, again.json()["changed"]) == (200, False)
    renamed = await http.post(
        "/api/schedules", json={"workflow": NIGHTLY, "inputs": {"count": 3}, "name": "nightly-3"}
    )
    assert renamed.status_code == 201, renamed.text
    listed = (await http.get("/api/schedules")).json()["schedules"]
    assert [(s["name"], s["workflow"], s["inputs"]) for s in listed] == [
        ("nightly", "nightly", {"target": "prod"}),
        ("nightly-3", "nightly", {"count": 3}),
    ]

    paused = await http.post("/api/schedules/nightly/pause", json={"by": "ops"})
    assert paused.status_code == 200, paused.text
    assert (paused.json()["paused"], paused.json()["paused_by"], paused.json()["next_tick"]) == (
        True,
        "ops",
        None,
    )
    assert paused.json()["changed"] is True
    twice = await http.post("/api/schedules/nightly/pause")
    assert (twice.json()["changed"], twice.json()["paused_by"]) == (False, "ops")
    shown = (await http.get("/api/schedules/nightly")).json()
    assert shown["paused"] is True
    resumed = await http.post("/api/schedules/nightly/resume")
    assert resumed.status_code == 200, resumed.text
    assert (resumed.json()["changed"], resumed.json()["paused"]) == (True, False)
    assert resumed.json()["next_tick"] is not None
    assert (await http.post("/api/schedules/nightly/resume")).json()["changed"] is False

    deleted = await http.delete("/api/schedules/nightly")
    assert deleted.json() == {"name": "nightly", "deleted": True}
    assert [s["name"] for s in (await http.get("/api/schedules")).json()["schedules"]] == [
        "nightly-3"
    ]
    for method, path in [
        ("DELETE", "/api/schedules/nightly"),
        ("GET", "/api/schedules/nightly"),
        ("POST", "/api/schedules/nightly/pause"),
        ("POST", "/api/schedules/nightly/resume"),
    ]:
        gone = await http.request(method, path)
        assert gone.status_code == 404, (method, path, gone.text)
        assert gone.json()["code"] == "unknown_schedule"
        assert "no schedule named 'nightly'" in gone.json()["error"]
    bad_name = await http.post("/api/schedules/a.b/pause")
    assert bad_name.status_code == 422 and "is not a valid name" in bad_name.json()["error"]


async def test_a_yaml_schedule_runs_at_its_ticks(
    http: httpx.AsyncClient,  # noqa: F811
    clean_nats: NATS,
) -> None:
    added = await http.post(
        "/api/schedules",
        content=EVERY_YAML,
        params={"input": "count=2", "name": "often-2"},
        headers={"Content-Type": "application/yaml"},
    )
    assert added.status_code == 201, added.text
    assert (added.json()["name"], added.json()["inputs"]) == ("often-2", {"count": 2})
    ticker = Ticker(clean_nats)
    await ticker.start()
    try:

        async def a_run() -> WorkflowStarted:
            found = await EventStore(clean_nats).read(subjects.events_of_type("WorkflowStarted"))
            started = [r.event for r in found if isinstance(r.event, WorkflowStarted)]
            assert started, "no run yet"
            return started[0]

        run = await assert_eventually(a_run, timeout=20)
        assert (run.definition.name, run.inputs) == ("often", {"count": 2})
    finally:
        await ticker.stop()
    await http.post("/api/schedules/often-2/pause")


async def test_bad_schedules_are_refused_with_every_problem(
    http: httpx.AsyncClient,  # noqa: F811
) -> None:
    bad_yaml = (
        "name: bad\njobs:\n  a: {run: echo}\nschedule:\n  - cron: '0 3 * *'\n"
        "  - {cron: '0 3 * * *', timezone: Europe/Nowhere}\n  - every: 0.2s\n"
    )
    answer = await http.post(
        "/api/schedules", content=bad_yaml, headers={"Content-Type": "application/yaml"}
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "invalid_workflow"
    problems = answer.json()["problems"]
    for located in (
        "body:5 schedule[0].cron",
        "body:6 schedule[1].timezone",
        "body:7 schedule[2].every",
    ):
        assert any(located in problem for problem in problems), (located, problems)

    plain = {"name": "plain", "jobs": {"a": {"run": "echo"}}}
    no_schedule = await http.post("/api/schedules", json={"workflow": plain})
    assert no_schedule.status_code == 422
    assert "plain has no schedule" in no_schedule.json()["error"]
    unknown = await http.post("/api/schedules", json={"workflow": NIGHTLY, "inputs": {"nope": 1}})
    assert unknown.status_code == 422 and "nope" in unknown.text, unknown.text
    typed = await http.post("/api/schedules", json={"workflow": NIGHTLY, "inputs": {"count": "x"}})
    assert typed.status_code == 422 and "count" in typed.text, typed.text
    typo = await http.post("/api/schedules", json={"workflow": NIGHTLY, "input": {"a": 1}})
    assert typo.status_code == 422 and "input" in typo.json()["problems"][0], typo.text
    missing = await http.post("/api/schedules", json={})
    assert missing.status_code == 422 and "workflow" in missing.json()["problems"][0]
    not_json = await http.post(
        "/api/schedules", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    bad_input = await http.post(
        "/api/schedules",
        content=EVERY_YAML,
        params={"input": "count"},
        headers={"Content-Type": "application/yaml"},
    )
    assert bad_input.status_code == 422 and "KEY=VALUE" in bad_input.text, bad_input.text
    assert (await http.get("/api/schedules")).json() == {"schedules": []}


async def test_schedules_need_the_client_role(clean_nats: NATS, nats_url: str) -> None:
    tokens = Tokens({"w-token-123": Role.WORKER, "c-token-123": Role.CLIENT})
    settings = GatewaySettings(port=0, tokens=tokens)
    async with (
        running_gateway(nats_url, settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as api,
    ):
        for token, status in [(None, 401), ("w-token-123", 403), ("c-token-123", 201)]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            answer = await api.post("/api/schedules", json={"workflow": NIGHTLY}, headers=headers)
            assert answer.status_code == status, (token, answer.text)
        worker = {"Authorization": "Bearer w-token-123"}
        assert (await api.get("/api/schedules", headers=worker)).status_code == 403
        assert (await api.delete("/api/schedules/nightly", headers=worker)).status_code == 403
        doc = (await api.get("/openapi.json")).json()
        for path in ("/api/schedules", "/api/schedules/{name}", "/api/schedules/{name}/pause"):
            assert path in doc["paths"], path
