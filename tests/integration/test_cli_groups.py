"""Workflow concurrency groups through the ``jetwork`` entry point (``examples/deploy.yaml``),
on a real engine and projector: a run waiting for its group is ``queued`` in ``status`` and
``list`` (saying for which group), a cancel of the running one lets it start, and a bad
``concurrency`` is refused with its location."""

from __future__ import annotations

import json
from pathlib import Path

from projections.projector import Projector
from tests.eventually import assert_eventually
from tests.integration.test_cli import Cli, cli, failed, ok, started  # noqa: F401  (fixtures)
from tests.integration.test_client import FAST_PROJECTOR

EXAMPLE = Path(__file__).parents[2] / "examples" / "deploy.yaml"


def deploy_file(tmp_path: Path, concurrency: str = "{group: 'deploy-${{ inputs.env }}'}") -> Path:
    path = tmp_path / "deploy.yaml"
    path.write_text(
        "name: deploy\n"
        "inputs: {env: {default: prod}}\n"
        f"concurrency: {concurrency}\n"
        "jobs:\n"
        "  a: {run: echo a}\n"
    )
    return path


async def status_of(cli: Cli, workflow_id: str) -> dict[str, object]:  # noqa: F811
    view: dict[str, object] = json.loads(ok(await cli("status", workflow_id, "--json")).stdout)
    return view


async def test_a_run_waiting_for_its_group_is_queued_in_status_and_list_until_a_slot_frees(
    cli: Cli,  # noqa: F811
) -> None:
    await cli.runner.stop()  # nobody claims: the first run keeps its slot
    projector = Projector(cli.nc, settings=FAST_PROJECTOR)
    await projector.start()
    try:
        first = await started(cli, EXAMPLE, "--input", "env=prod")

        async def running() -> bool:
            return (await status_of(cli, first))["status"] == "running"

        await assert_eventually(running)
        second = await started(cli, EXAMPLE, "--input", "env=prod")

        async def queued() -> dict[str, object]:
            view = await status_of(cli, second)
            assert view["status"] == "queued", view
            return view

        view = await assert_eventually(queued)
        assert view["reason"] == "waiting for concurrency group deploy-prod (limit 1)"
        assert view["group"] == "deploy-prod"
        table = ok(await cli("status", second)).stdout
        assert "queued" in table and "reason: waiting for concurrency group deploy-prod" in table

        async def listed() -> bool:
            rows = json.loads(ok(await cli("list", "--status", "queued", "--json")).stdout)
            assert [(r["workflow_id"], r["group"]) for r in rows] == [(second, "deploy-prod")]
            out = ok(await cli("list", "--status", "queued")).stdout
            assert second in out and "waiting for concurrency" in out, out
            return True

        await assert_eventually(listed, timeout=15)
        failed(await cli("pause", second), "it waits for concurrency group deploy-prod")
        ok(await cli("cancel", first))

        async def admitted() -> bool:
            return (await status_of(cli, second))["status"] == "running"

        await assert_eventually(admitted)
        history = json.loads(ok(await cli("history", second, "--json")).stdout)
        kinds = [e["type"] for e in history if e["type"].startswith("Workflow")]
        assert kinds[:3] == ["WorkflowStarted", "WorkflowQueued", "WorkflowAdmitted"]
    finally:
        await projector.stop()


async def test_a_bad_workflow_concurrency_is_refused_with_its_location(
    cli: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = deploy_file(tmp_path, "{group: 'x-${{ inputs.nope }}', limit: 0}")
    failed(
        await cli("run", str(path)),
        "concurrency.limit: must be a whole number >= 1, got 0",
        "concurrency.group: inputs.nope: no such input",
    )
