"""Typed inputs refused before anything runs: ``jetwork run`` and ``POST /api/workflows`` on the
real server list every problem, located, and start nothing; good inputs are coerced and run."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.integration.test_cli import Cli, cli, failed, ok  # noqa: F401  (fixture)
from tests.integration.test_gateway_api import http  # noqa: F401  (fixture)

TYPED = (
    "name: typed\n"
    "inputs:\n"
    "  count: {type: integer, minimum: 1, default: 1}\n"
    "  tags: {type: array, items: {type: string}}\n"
    "  mode: {enum: [fast, safe], default: fast}\n"
    "  version: {type: string}\n"
    "jobs:\n"
    "  a: {run: 'echo ${{ inputs.count }} ${{ inputs.version }}'}\n"
)


async def test_run_refuses_bad_inputs_with_every_problem_and_starts_nothing(
    cli: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "typed.yaml"
    path.write_text(TYPED)
    error = failed(
        await cli("run", str(path), "-i", "count=-1", "-i", "tags=[1]", "-i", "mode=slow"),
        "inputs.count: -1 is less than the minimum 1",
        "inputs.tags[0]: expected a string, got 1",
        'inputs.mode: "slow" is not one of "fast", "safe"',
    )
    assert "3 problem(s)" in error
    # Refused before anything was sent: the commands stream holds no start.
    info = await cli.nc.jetstream().stream_info("JW_COMMANDS")
    assert info.state.last_seq == 0
    # Good inputs are read as their declared types: 3 an integer, 1.0 the text "1.0".
    started = ok(await cli("run", str(path), "-i", "count=3", "-i", "version=1.0", "--wait"))
    assert started.exit_code == 0
    workflow_id = started.output.split()[1]
    history = json.loads(ok(await cli("history", workflow_id, "--json")).stdout)
    assert history[0]["data"]["inputs"] == {
        "count": 3,
        "tags": None,
        "mode": "fast",
        "version": "1.0",
    }


async def test_http_start_refuses_bad_inputs_listing_every_problem(
    http: httpx.AsyncClient,  # noqa: F811
) -> None:
    answer = await http.post(
        "/api/workflows",
        content=TYPED,
        params=[("input", "count=0"), ("input", "version=2")],
        headers={"content-type": "application/yaml"},
    )
    assert answer.status_code == 422, answer.text
    assert "inputs.count: 0 is less than the minimum 1" in answer.text
    body = await http.post(
        "/api/workflows",
        json={"workflow": TYPED, "inputs": {"count": "3", "tags": "a", "version": 2}},
    )
    assert body.status_code == 422, body.text
    for problem in (
        'inputs.count: expected an integer, got \\"3\\"',
        'inputs.tags: expected a list, got \\"a\\"',
        "inputs.version: expected a string, got 2",
    ):
        assert problem in body.text, (problem, body.text)
    listed = (await http.get("/api/workflows")).json()["workflows"]
    assert listed == []
