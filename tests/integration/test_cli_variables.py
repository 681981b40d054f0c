"""``jetwork set`` through the entry point, on a real engine: what it prints (``--json`` too),
``vars`` in ``status``, who set them in ``history``, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

from tests.eventually import assert_eventually
from tests.integration.test_cli import Cli, cli, failed, ok, started  # noqa: F401  (fixture)


async def test_set_prints_what_happened_and_status_and_history_show_it(
    cli: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    await cli.runner.stop()  # nobody claims: a stays queued, b pending
    path = tmp_path / "vars.yaml"
    path.write_text(
        "name: vars\n"
        "vars: {region: eu}\n"
        "jobs:\n"
        "  a: {run: echo a}\n"
        "  b: {needs: [a], run: 'echo ${{ vars.region }}'}\n"
    )
    workflow_id = await started(cli, path)
    failed(await cli("set", workflow_id, "novalue"), "expected KEY=VALUE")
    failed(await cli("set", workflow_id, "n=[1", "--json-values"), "n: '[1' is not JSON")

    async def set_once() -> dict[str, object]:
        result = await cli("set", workflow_id, 'region="us"', "n=[1,2]", "--json-values", "--json")
        assert result.exit_code == 0, result.output
        answer: dict[str, object] = json.loads(result.stdout)
        assert answer["applied"], answer  # the start may still wait for the engine
        return answer

    answer = await assert_eventually(set_once)
    assert answer["values"] == {"region": "us", "n": [1, 2]}
    again = ok(await cli("set", workflow_id, "region=us", "--by", "ops"))
    assert again.stderr.strip() == f"{workflow_id} has these values already"
    view = json.loads(ok(await cli("status", workflow_id, "--json")).stdout)
    assert view["vars"] == {"region": "us", "n": [1, 2]}
    assert "vars: n=[1,2], region=us" in ok(await cli("status", workflow_id)).stdout
    history = json.loads(ok(await cli("history", workflow_id, "--json")).stdout)
    sets = [e["data"]["values"] for e in history if e["type"] == "WorkflowVariablesSet"]
    assert sets == [{"region": "us", "n": [1, 2]}]
    ok(await cli("cancel", workflow_id))

    async def refused() -> bool:
        result = await cli("set", workflow_id, "region=ap")
        return result.exit_code == 1 and "it has ended" in result.stderr

    await assert_eventually(refused)
