"""``jetwork set`` end to end: ``sdk.Client.set_vars`` and a plain NATS request to a real engine
on a real nats-server (the in-test runner standing in for workers), across an engine restart."""

from __future__ import annotations

import orjson
import pytest

from actors.job import JobState
from events import subjects
from events.catalog import JobQueued, WorkflowVariablesSet
from events.errors import CommandRefused
from events.requests import SetVarsRequest
from tests.engine_harness import Outcome, running_engine, start_workflow, types
from tests.eventually import assert_eventually
from tests.integration.test_control import Rig, rig  # noqa: F401  (the fixture)

DEFINITION = {
    "name": "deploy",
    "vars": {"region": "eu", "batch": 1},
    "jobs": {
        "a": {"run": "echo a ${{ vars.region }}"},
        "b": {"needs": ["a"], "run": "echo b ${{ vars.region }} ${{ vars.batch }}"},
    },
}


def succeeds(state: JobState) -> Outcome:
    return Outcome(outputs={"v": state.job})


async def _queued_runs(rig: Rig, wf: str) -> dict[str, str | None]:  # noqa: F811
    return {
        e.job: e.spec.run for r in await rig.history(wf) if isinstance((e := r.event), JobQueued)
    }


async def _started_paused(rig: Rig, wf: str) -> None:  # noqa: F811
    """Start ``wf`` paused: start and pause wait in the stream together while no engine runs,
    so the engine decides both before any job is queued (every job reads what is set next)."""
    await start_workflow(rig.nc, wf, DEFINITION)
    await rig.client.pause(wf, answer_timeout=0)
    rig.engine = await running_engine(rig.nc, rig.dispatcher)
    await rig.until(wf, "wf.WorkflowPaused")


async def test_set_reaches_jobs_not_yet_queued_and_survives_an_engine_restart(
    rig: Rig,  # noqa: F811
) -> None:
    await rig.start(succeeds)
    assert rig.engine is not None
    await rig.engine.stop()
    rig.engine = None
    wf = "wf-vars"
    await _started_paused(rig, wf)

    result = await rig.client.set_vars(
        wf, {"region": "us", "batch": 500}, by="ops", reason="failover"
    )
    assert (result.command, result.applied, result.changed) == ("set", True, True)
    again = await rig.client.set_vars(wf, {"region": "us"})
    assert (again.applied, again.changed) == (True, False)
    assert (await rig.client.status(wf)).vars == {"region": "us", "batch": 500}

    await rig.restart_engine()  # the new engine reads the variables back from the log
    await rig.client.resume(wf)
    history = await rig.until(wf, "wf.WorkflowSucceeded")
    event = next(r.event for r in history if isinstance(r.event, WorkflowVariablesSet))
    assert (event.by, event.reason, event.values) == (
        "ops",
        "failover",
        {"region": "us", "batch": 500},
    )
    assert await _queued_runs(rig, wf) == {"a": "echo a us", "b": "echo b us 500"}
    with pytest.raises(CommandRefused, match="it has ended"):
        await rig.client.set_vars(wf, {"region": "ap"})


async def test_a_plain_nats_set_sent_while_no_engine_runs_is_applied_and_answered(
    rig: Rig,  # noqa: F811
) -> None:
    await rig.start(succeeds)
    assert rig.engine is not None
    await rig.engine.stop()
    wf = "wf-vars-nats"
    await _started_paused(rig, wf)
    assert rig.engine is not None
    await rig.engine.stop()
    rig.engine = None
    # What any NATS client sends (docs/architecture.md, "Commands from any language").
    inbox = rig.nc.new_inbox()
    answers = await rig.nc.subscribe(inbox, max_msgs=1)
    payload = {"type": "set", "workflow_id": wf, "by": "script", "values": {"batch": 7}}
    await rig.nc.jetstream().publish(
        f"cmd.{subjects.partition_of(wf)}.set.{wf}",
        orjson.dumps(payload | {"reply_to": inbox}),
    )
    rig.engine = await running_engine(rig.nc, rig.dispatcher)
    answer = orjson.loads((await answers.next_msg(timeout=15)).data)
    assert answer == {
        "workflow_id": wf,
        "command": "set",
        "accepted": True,
        "changed": True,
        "error": None,
    }
    await rig.client.resume(wf)

    async def b_queued() -> dict[str, str | None]:
        runs = await _queued_runs(rig, wf)
        assert "b" in runs, types(await rig.history(wf))
        return runs

    assert await assert_eventually(b_queued, timeout=15) == {"a": "echo a eu", "b": "echo b eu 7"}
    assert SetVarsRequest.model_validate(payload).values == {"batch": 7}
