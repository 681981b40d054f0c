"""Rerun from a job and restart end to end: ``sdk.Client`` and plain NATS requests to a real
engine on a real nats-server, the in-test runner standing in for workers."""

from __future__ import annotations

import itertools

import orjson
import pytest

from actors.job import JobState
from events import subjects
from events.catalog import JobQueued, WorkflowRerun, WorkflowRestarted, WorkflowStarted
from events.errors import CommandRefused
from events.requests import RerunRequest, RestartRequest
from sdk.errors import JobNotFound
from tests.engine_harness import Outcome, running_engine, start_workflow, types
from tests.eventually import assert_eventually
from tests.integration.test_control import Rig, a_hangs, rig  # noqa: F401  (the fixture)

# a -> b -> c, and d needs_any of c; e stands apart.
GRAPH = {
    "name": "graph",
    "jobs": {
        "a": {"run": "echo a"},
        "b": {"needs": ["a"], "run": "echo b ${{ needs.a.outputs.v }}"},
        "c": {"needs": ["b"], "run": "echo c ${{ needs.b.outputs.v }}"},
        "d": {"needs_any": ["c"], "run": "echo d ${{ needs.c.outputs.v }}"},
        "e": {"run": "echo e"},
    },
}


def counting() -> object:
    """Each attempt outputs ``v``: ``<job><attempt>`` (b's second attempt says ``b2``)."""

    def behaviour(state: JobState) -> Outcome:
        return Outcome(outputs={"v": f"{state.job}{state.attempt}"})

    return behaviour


async def test_a_rerun_runs_the_job_and_everything_below_with_the_new_outputs(
    rig: Rig,  # noqa: F811
) -> None:
    await rig.start(counting())
    await start_workflow(rig.nc, "wf-rerun", GRAPH)
    await rig.until("wf-rerun", "wf.WorkflowSucceeded")
    with pytest.raises(JobNotFound, match="has no job 'zz'"):
        await rig.client.rerun("wf-rerun", from_job="zz")

    rerun = await rig.client.rerun("wf-rerun", from_job="b", reason="new data", by="ops")
    assert (rerun.applied, rerun.changed) == (True, True)
    history = await rig.until("wf-rerun", "wf.WorkflowRerun")

    async def succeeded_again() -> bool:
        kinds = types(await rig.history("wf-rerun"))
        return kinds.count("wf.WorkflowSucceeded") == 2

    await assert_eventually(succeeded_again, timeout=15)
    history = await rig.history("wf-rerun")
    event = next(r.event for r in history if isinstance(r.event, WorkflowRerun))
    assert (event.from_job, event.jobs, event.by, event.reason) == (
        "b",
        ("b", "c", "d"),
        "ops",
        "new data",
    )
    runs = {
        (e.job, e.attempt): e.spec.run for r in history if isinstance((e := r.event), JobQueued)
    }
    # Downstream jobs of the rerun read its new outputs; a keeps its own (one attempt).
    assert runs[("b", 2)] == "echo b a1"
    assert runs[("c", 2)] == "echo c b2"
    assert runs[("d", 2)] == "echo d c2"
    assert ("a", 2) not in runs and ("e", 2) not in runs
    view = await rig.client.status("wf-rerun")
    assert view.status == "succeeded"
    attempts = {name: job.attempts for name, job in view.jobs.items()}
    assert attempts == {"a": 1, "b": 2, "c": 2, "d": 2, "e": 1}
    assert view.jobs["a"].outputs == {"v": "a1"} and view.jobs["c"].outputs == {"v": "c2"}


async def test_a_rerun_or_restart_of_a_running_or_paused_workflow_is_refused(rig: Rig) -> None:  # noqa: F811
    await rig.start(a_hangs)
    await start_workflow(rig.nc, "wf-busy", GRAPH)
    await rig.until("wf-busy", "job.a.JobQueued")
    with pytest.raises(CommandRefused, match="it is running; only an ended workflow"):
        await rig.client.rerun("wf-busy", from_job="a")
    await rig.client.pause("wf-busy")
    with pytest.raises(CommandRefused, match="it is paused; only an ended workflow"):
        await rig.client.rerun("wf-busy", from_job="a")
    with pytest.raises(
        CommandRefused, match="it is paused; only an ended workflow can be restarted"
    ):
        await rig.client.restart("wf-busy")
    assert not {"wf.WorkflowRerun", "wf.WorkflowRestarted"} & set(
        types(await rig.history("wf-busy"))
    )


async def test_a_plain_nats_rerun_is_answered_and_survives_an_engine_restart(
    rig: Rig,  # noqa: F811
) -> None:
    await rig.start(counting())
    wf = "wf-nats-rerun"
    await start_workflow(rig.nc, wf, GRAPH)
    await rig.until(wf, "wf.WorkflowSucceeded")
    assert rig.engine is not None
    await rig.engine.stop()
    rig.engine = None
    # What any NATS client sends (docs/architecture.md, "Commands from any language"), here
    # while no engine runs: it waits in the stream for the next one.
    inbox = rig.nc.new_inbox()
    answers = await rig.nc.subscribe(inbox, max_msgs=1)
    request = RerunRequest(workflow_id=wf, job="c", by="script", reply_to=inbox)
    await rig.nc.jetstream().publish(
        f"cmd.{subjects.partition_of(wf)}.rerun.{wf}", request.model_dump_json().encode()
    )
    rig.engine = await running_engine(rig.nc, rig.dispatcher)
    answer = orjson.loads((await answers.next_msg(timeout=15)).data)
    assert answer == {
        "workflow_id": wf,
        "command": "rerun",
        "accepted": True,
        "changed": True,
        "error": None,
    }

    async def succeeded_again() -> list[str]:
        kinds = types(await rig.history(wf))
        assert kinds.count("wf.WorkflowSucceeded") == 2, kinds
        return kinds

    kinds = await assert_eventually(succeeded_again, timeout=15)
    rerun_at = kinds.index("wf.WorkflowRerun")
    again = [kind for kind in itertools.islice(kinds, rerun_at, None) if kind.endswith("Queued")]
    assert again == ["job.c.JobQueued", "job.d.JobQueued"]


async def test_a_restart_starts_a_new_run_linked_to_the_old_one_both_ways(
    rig: Rig,  # noqa: F811
) -> None:
    definition = {
        "name": "again",
        "inputs": {"who": {"default": "world"}},
        "jobs": {"a": {"run": "echo ${{ inputs.who }}"}, "b": {"needs": ["a"], "run": "echo b"}},
    }
    wf = "wf-restart"

    def old_fails_new_runs(state: JobState) -> Outcome:
        if state.workflow_id == wf:
            return Outcome(error="no", retryable=False)
        return Outcome(hang=True)

    await rig.start(old_fails_new_runs)
    await start_workflow(rig.nc, wf, definition, inputs={"who": "moon"})
    await rig.until(wf, "wf.WorkflowFailed")

    result = await rig.client.restart(wf, reason="once more", by="ops")
    assert (result.applied, result.changed) == (True, True)
    new = result.restarted_as
    assert new is not None and new != wf
    await rig.until(new, "wf.WorkflowStarted", "job.a.JobQueued")
    old_view, new_view = await rig.client.status(wf), await rig.client.status(new)
    assert (old_view.status, old_view.restarted_as, old_view.restarted_from) == (
        "failed",
        new,
        None,
    )
    assert (new_view.status, new_view.restarted_from, new_view.restarted_as) == (
        "running",
        wf,
        None,
    )
    queued = next(r.event for r in await rig.history(new) if isinstance(r.event, JobQueued))
    assert queued.spec.run == "echo moon"  # the same inputs
    restarted = next(
        r.event for r in await rig.history(wf) if isinstance(r.event, WorkflowRestarted)
    )
    assert (restarted.by, restarted.reason, restarted.restarted_as) == ("ops", "once more", new)


async def test_a_plain_nats_restart_is_answered_with_its_new_run(rig: Rig) -> None:  # noqa: F811
    await rig.start(counting())
    wf = "wf-nats-restart"
    await start_workflow(rig.nc, wf, GRAPH)
    await rig.until(wf, "wf.WorkflowSucceeded")
    inbox = rig.nc.new_inbox()
    answers = await rig.nc.subscribe(inbox, max_msgs=1)
    request = RestartRequest(workflow_id=wf, restarted_as="wf-nats-again", reply_to=inbox)
    await rig.nc.jetstream().publish(
        f"cmd.{subjects.partition_of(wf)}.restart.{wf}", request.model_dump_json().encode()
    )
    answer = orjson.loads((await answers.next_msg(timeout=15)).data)
    assert answer == {
        "workflow_id": wf,
        "command": "restart",
        "accepted": True,
        "changed": True,
        "error": None,
        "restarted_as": "wf-nats-again",
    }
    history = await rig.until("wf-nats-again", "wf.WorkflowSucceeded")
    started = history[0].event
    assert isinstance(started, WorkflowStarted) and started.restarted_from == wf
    assert (await rig.client.status(wf)).restarted_as == "wf-nats-again"


async def test_a_restart_sent_while_no_engine_runs_starts_its_run_when_one_is_back(
    rig: Rig,  # noqa: F811
) -> None:
    await rig.start(counting())
    wf = "wf-restart-later"
    await start_workflow(rig.nc, wf, GRAPH)
    await rig.until(wf, "wf.WorkflowSucceeded")
    assert rig.engine is not None
    await rig.engine.stop()
    rig.engine = None
    stored = await rig.client.restart(wf, answer_timeout=0.2)
    new = stored.restarted_as
    assert stored.applied is False and new is not None  # stored; its new run's id known already
    assert "wf.WorkflowRestarted" not in types(await rig.history(wf))
    rig.engine = await running_engine(rig.nc, rig.dispatcher)
    history = await rig.until(new, "wf.WorkflowSucceeded")
    started = history[0].event
    assert isinstance(started, WorkflowStarted) and started.restarted_from == wf
    assert (await rig.client.status(wf)).restarted_as == new
