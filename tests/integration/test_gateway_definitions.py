"""Definitions by name and version over real HTTP: register (JSON or YAML), list, show, start
by name; errors as JSON; the OpenAPI document."""

from __future__ import annotations

import httpx
from nats.aio.client import Client as NATS

from events.catalog import WorkflowStarted
from events.store import EventStore
from tests.eventually import assert_eventually
from tests.integration.test_gateway_api import http  # noqa: F401  (the fixture)

V1 = {"name": "report", "jobs": {"build": {"run": "echo one", "labels": ["http"]}}}
V2_YAML = "name: report\njobs:\n  build: {run: echo two, labels: [http]}\n"


async def test_register_list_show_and_start_by_name(
    http: httpx.AsyncClient,  # noqa: F811
    clean_nats: NATS,
) -> None:
    first = await http.post("/api/definitions", json={"workflow": V1})
    assert (first.status_code, first.json()["reference"]) == (201, "report@1"), first.text
    again = await http.post("/api/definitions", json={"workflow": V1})
    assert (again.status_code, again.json()["created"]) == (200, False)
    second = await http.post(
        "/api/definitions", content=V2_YAML, headers={"Content-Type": "application/yaml"}
    )
    assert (second.status_code, second.json()["version"]) == (201, 2), second.text
    pinned = await http.post(
        "/api/definitions", json={"workflow": {**V1, "version": 2, "env": {"X": "1"}}}
    )
    assert pinned.status_code == 409 and pinned.json()["code"] == "conflict", pinned.text

    listed = (await http.get("/api/definitions")).json()["definitions"]
    assert [(d["reference"], d["versions"]) for d in listed] == [("report@2", 2)]
    shown = (await http.get("/api/definitions/report@1")).json()
    assert shown["definition"]["jobs"]["build"]["run"] == "echo one"
    assert (await http.get("/api/definitions/report")).json()["version"] == 2
    missing = await http.get("/api/definitions/report@9")
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_definition"

    started = await http.post("/api/workflows", json={"definition": "report@1"})
    assert started.status_code == 201, started.text
    workflow_id = started.json()["workflow_id"]

    async def recorded_version() -> int | None:
        history = await EventStore(clean_nats).history(workflow_id)
        assert history, "not started yet"
        event = history[0].event
        assert isinstance(event, WorkflowStarted)
        return event.definition.version

    assert await assert_eventually(recorded_version, timeout=15) == 1
    status = (await http.get(f"/api/workflows/{workflow_id}")).json()
    assert status["version"] == 1
    both = await http.post("/api/workflows", json={"definition": "report", "workflow": V1})
    assert both.status_code == 422
    unknown = await http.post("/api/workflows", json={"definition": "nothing"})
    assert unknown.status_code == 404

    doc = (await http.get("/openapi.json")).json()
    for path in ("/api/definitions", "/api/definitions/{reference}"):
        assert path in doc["paths"], path
    assert "definition" in doc["components"]["schemas"]["StartBody"]["properties"]
