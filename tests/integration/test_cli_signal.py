"""``jetwork signal`` through the entry point on a real engine, with ``examples/approval.yaml``:
what ``status`` shows while the job waits, what the signal prints (``--json`` too), what
``history`` records, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

from tests.eventually import assert_eventually
from tests.integration.test_cli import Cli, cli, failed, ok, started  # noqa: F401  (fixtures)

EXAMPLE = Path(__file__).parents[2] / "examples" / "approval.yaml"


async def test_signal_resumes_the_example_and_history_records_it(cli: Cli) -> None:  # noqa: F811
    workflow_id = await started(cli, EXAMPLE, "--input", "version=2.0")

    async def waiting() -> bool:
        view = json.loads(ok(await cli("status", workflow_id, "--json")).stdout)
        return bool(view["jobs"]["approve"]["status"] == "waiting")

    await assert_eventually(waiting)
    table = ok(await cli("status", workflow_id)).stdout
    assert "waits for signal approve until" in table

    failed(await cli("signal", workflow_id, "approve", "--data", "[1]"), "--data must be a JSON")
    failed(await cli("signal", workflow_id, "approve", "--data", "{"), "--data is not valid JSON")
    failed(await cli("signal", workflow_id, "aprove"),
           "no job of it waits for signal 'aprove' (its jobs wait for: approve)")  # fmt: skip
    data = '{"by": "ann", "ticket": "OPS-12"}'
    sent = ok(await cli("signal", workflow_id, "approve", "--data", data, "--id", "ops-12"))
    assert sent.stderr.strip() == f"sent signal approve to {workflow_id}"
    again = ok(await cli("signal", workflow_id, "approve", "--id", "ops-12", "--json"))
    assert json.loads(again.stdout) == {
        "workflow_id": workflow_id,
        "command": "signal",
        "applied": True,
        "changed": False,
        "signal": "approve",
    }

    async def succeeded() -> bool:
        view = json.loads(ok(await cli("status", workflow_id, "--json")).stdout)
        return bool(view["status"] == "succeeded")

    await assert_eventually(succeeded)
    history = json.loads(ok(await cli("history", workflow_id, "--json")).stdout)
    signals = [(e["type"], e["data"]) for e in history if e["type"].startswith("Signal")]
    assert [kind for kind, _ in signals] == ["SignalReceived", "SignalConsumed"]
    assert signals[0][1]["data"] == {"by": "ann", "ticket": "OPS-12"}
    assert signals[1][1]["consumer"] == "approve"
    assert "SignalReceived" in ok(await cli("history", workflow_id)).stdout
    failed(await cli("signal", workflow_id, "approve"), "it has ended (succeeded)")
