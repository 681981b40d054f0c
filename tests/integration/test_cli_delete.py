"""``jetwork delete`` and ``jetwork list``'s filters through the CLI, against a real server."""

from __future__ import annotations

import json
from pathlib import Path

from projections.projector import Projector
from sdk.client import Client
from tests.eventually import assert_eventually
from tests.integration.test_cli import Cli, cli, failed, ok, started  # noqa: F401  (the fixture)
from tests.integration.test_client import FAST_PROJECTOR


async def test_delete_refuses_an_open_workflow_then_deletes_it_once_ended(
    cli: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "slow.yaml"
    path.write_text("name: slow\ninputs: {env: {default: dev}}\njobs:\n  a: {run: echo a}\n")
    projector = Projector(cli.nc, settings=FAST_PROJECTOR)
    await projector.start()
    try:
        wf = await started(cli, path, "-i", "env=prod")
        kept = await started(cli, path)
        client = Client(cli.nc)

        async def ended() -> bool:
            for one in (wf, kept):
                assert (await client.status(one)).status == "succeeded"
            return True

        await assert_eventually(ended, timeout=15)
        await client.close()

        async def listed() -> bool:
            rows = json.loads(ok(await cli("list", "--json", "--input", "env=prod")).stdout)
            assert [row["workflow_id"] for row in rows] == [wf]
            return True

        await assert_eventually(listed, timeout=15)

        async def in_window() -> bool:  # (kept's view may be written a batch after wf's)
            window = ("list", "--since", "1h", "--until", "2099-01-01T00:00:00Z", "--json")
            out = ok(await cli(*window))
            assert {row["workflow_id"] for row in json.loads(out.stdout)} == {wf, kept}
            return True

        await assert_eventually(in_window, timeout=15)
        result = await cli("list", "--since", "yesterday")
        assert result.exit_code == 2 and "neither a duration" in result.output

        deleted = json.loads(ok(await cli("delete", wf, "--reason", "test", "--json")).stdout)
        assert (deleted["workflow_id"], deleted["status"]) == (wf, "succeeded")
        failed(await cli("status", wf), f"workflow '{wf}' not found")
        history = ok(await cli("history", wf)).stdout
        assert "WorkflowDeleted" in history

        async def gone() -> bool:
            rows = json.loads(ok(await cli("list", "--json")).stdout)
            assert [row["workflow_id"] for row in rows] == [kept]
            return True

        await assert_eventually(gone, timeout=15)
        failed(await cli("delete", "wf-nope"), "workflow 'wf-nope' not found")
        later = tmp_path / "later.yaml"
        later.write_text("name: later\njobs:\n  a: {run: echo a, delay: 3600}\n")
        open_wf = await started(cli, later)
        failed(await cli("delete", open_wf), "it is running; only an ended workflow")
        assert (await cli.nc.jetstream().stream_info("JW_EVENTS")).state.messages > 0
    finally:
        await projector.stop()
