"""Sub-workflows and loops through the real engine(s), the real server and real shell workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from actors._child_runs import child_id
from actors.definitions import load_workflow_file
from actors.definitions.mapping import definition_mapping
from actors.engine import Engine, EngineSettings
from events.base import RecordedEvent
from events.catalog import (
    JobFailed,
    JobLooped,
    JobStarted,
    SubWorkflowStarted,
    WorkflowStarted,
    WorkflowSucceeded,
)
from events.store import EventStore
from sdk.worker import Worker
from tests.claims import claims
from tests.engine_harness import cancel_workflow, ended, start_workflow, types
from tests.eventually import assert_eventually
from tests.integration.test_end_to_end import finished
from tests.invariants import check_log
from tests.jobs_harness import fast_config

EXAMPLES = Path(__file__).parents[2] / "examples"
OUT_OK = 'echo "::set-output out=ok"'
FAST = EngineSettings(ack_wait=5.0, poll_interval=0.2, lease_ttl=2.0, renew_every=0.25)


@pytest.fixture
async def engines(clean_nats: NATS) -> AsyncIterator[list[Engine]]:
    """Two engines: a parent and its child are likely owned by different ones."""
    running = [Engine(clean_nats, settings=FAST), Engine(clean_nats, settings=FAST)]
    for engine in running:
        await engine.start()
    yield running
    for engine in running:
        await engine.stop()


@pytest.fixture
async def worker(nats_url: str) -> AsyncIterator[Worker]:
    running = Worker(fast_config(nats_url, worker_id="w-shell"))
    await running.start()
    yield running
    await running.stop()


def parent_with(child: dict[str, Any], **job: Any) -> dict[str, Any]:
    return {
        "name": "parent",
        "jobs": {
            "sub": {"workflow": "./child.yaml", **job},
            "after": {
                "needs": ["sub"],
                "run": 'echo "::set-output got=${{ needs.sub.outputs.out }}"',
            },
        },
        "outputs": {"got": "${{ needs.after.outputs.got }}"},
        "workflows": {"./child.yaml": child},
    }


def child_running(command: str) -> dict[str, Any]:
    return {
        "name": "child",
        "inputs": {"word": {"default": "x"}},
        "jobs": {"work": {"run": command}},
        "outputs": {"out": "${{ needs.work.outputs.out }}"},
    }


async def assert_invariants(store: EventStore) -> None:
    """Every workflow in the log, parents and children, keeps every invariant."""
    report = await check_log(store)
    assert report.ok, "\n".join([report.summary(), *map(str, report.violations)])


def event(history: list[RecordedEvent], kind: type[Any]) -> Any:
    return next(r.event for r in history if isinstance(r.event, kind))


async def test_the_example_parent_runs_its_child_and_the_childs_outputs_flow_back(
    clean_nats: NATS, engines: list[Engine], worker: Worker
) -> None:
    definition = definition_mapping(load_workflow_file(EXAMPLES / "parent.yaml"))
    store = EventStore(clean_nats)
    await start_workflow(clean_nats, "wf-parent", definition)
    history = await finished(store, "wf-parent")
    assert ended(history) == "WorkflowSucceeded", types(history)
    child = event(history, SubWorkflowStarted).child_id
    assert child == child_id("wf-parent", "child", 1)
    child_history = await store.history(child)
    started = event(child_history, WorkflowStarted)
    assert started.parent is not None and started.parent.workflow_id == "wf-parent"
    assert started.inputs == {"who": "jetwork"}
    assert event(child_history, WorkflowSucceeded).outputs == {
        "greeting": "hello jetwork",
        "letters": "13",
    }
    assert event(history, WorkflowSucceeded).outputs == {"greeting": "hello jetwork"}
    await assert_invariants(store)


async def test_a_failed_child_fails_the_job_and_a_retry_runs_a_new_child(
    clean_nats: NATS, engines: list[Engine], worker: Worker
) -> None:
    definition = parent_with(child_running("echo boom >&2; exit 4"), retry=2)
    store = EventStore(clean_nats)
    await start_workflow(clean_nats, "wf-failing", definition)
    history = await finished(store, "wf-failing")
    assert ended(history) == "WorkflowFailed"
    children = [r.event.child_id for r in history if isinstance(r.event, SubWorkflowStarted)]
    assert children == [child_id("wf-failing", "sub", 1), child_id("wf-failing", "sub", 2)]
    failures = [r.event for r in history if isinstance(r.event, JobFailed) and r.event.job == "sub"]
    assert [f.will_retry for f in failures] == [True, False]
    assert failures[-1].error.startswith(f"sub-workflow {children[1]} failed: 1 job(s) failed")
    assert "job.after.JobSkipped" in types(history)
    await assert_invariants(store)


async def test_cancelling_the_parent_cancels_the_running_child(
    clean_nats: NATS, engines: list[Engine], worker: Worker
) -> None:
    definition = parent_with(child_running("exec sleep 60"))
    store = EventStore(clean_nats)
    await start_workflow(clean_nats, "wf-cancelled", definition)
    child = child_id("wf-cancelled", "sub", 1)

    async def child_job_running() -> bool:
        return any(isinstance(r.event, JobStarted) for r in await store.history(child))

    await assert_eventually(child_job_running, timeout=20, message="the child never ran")
    await cancel_workflow(clean_nats, "wf-cancelled", reason="not needed")
    history = await finished(store, "wf-cancelled", timeout=20)
    assert ended(history) == "WorkflowCancelled"
    assert "job.sub.JobCancelled" in types(history)
    child_history = await finished(store, child, timeout=5)
    assert ended(child_history) == "WorkflowCancelled"
    await assert_invariants(store)


async def test_an_engine_killed_while_the_child_runs_loses_nothing(
    clean_nats: NATS, worker: Worker
) -> None:
    first = Engine(clean_nats, settings=FAST)
    await first.start()
    store = EventStore(clean_nats)
    definition = parent_with(child_running('sleep 2; echo "::set-output out=${{ inputs.word }}"'),
                             **{"with": {"word": "kept"}})  # fmt: skip
    await start_workflow(clean_nats, "wf-restart", definition)
    child = child_id("wf-restart", "sub", 1)

    async def child_job_running() -> bool:
        return any(isinstance(r.event, JobStarted) for r in await store.history(child))

    await assert_eventually(child_job_running, timeout=20, message="the child never ran")
    await first.abandon()  # dies as a killed process would: no acks, no hand-over
    second = Engine(clean_nats, settings=FAST)
    await second.start()
    try:
        history = await finished(store, "wf-restart", timeout=30)
    finally:
        await second.stop()
    assert ended(history) == "WorkflowSucceeded", types(history)
    assert event(history, WorkflowSucceeded).outputs == {"got": "kept"}
    assert types(history).count("job.sub.SubWorkflowStarted") == 1
    await assert_invariants(store)


async def test_the_example_loop_runs_until_its_outputs_say_done(
    clean_nats: NATS, engines: list[Engine], worker: Worker
) -> None:
    definition = definition_mapping(load_workflow_file(EXAMPLES / "loop.yaml"))
    store = EventStore(clean_nats)
    await start_workflow(clean_nats, "wf-loop", definition)
    history = await finished(store, "wf-loop")
    assert ended(history) == "WorkflowSucceeded", types(history)
    assert [r.event.iteration for r in history if isinstance(r.event, JobLooped)] == [2, 3]
    assert len(claims(history, "poll")) == 3
    assert event(history, WorkflowSucceeded).outputs == {"iterations": "3"}
    await assert_invariants(store)


async def test_a_loop_reaching_max_iterations_fails_its_job(
    clean_nats: NATS, engines: list[Engine], worker: Worker
) -> None:
    definition = {
        "name": "endless",
        "jobs": {
            "poll": {
                "run": 'echo "::set-output done=false"',
                "loop": {"until": "outputs.done == 'true'", "max_iterations": 3},
            }
        },
    }
    store = EventStore(clean_nats)
    await start_workflow(clean_nats, "wf-endless", definition)
    history = await finished(store, "wf-endless")
    assert ended(history) == "WorkflowFailed"
    assert len(claims(history, "poll")) == 3
    failed = [r.event for r in history if isinstance(r.event, JobFailed)]
    assert failed[-1].error == (
        "loop reached max_iterations (3) and until never held: outputs.done == 'true'"
    )
    await assert_invariants(store)


async def test_an_engine_dying_between_the_append_and_the_childs_start_loses_nothing(
    clean_nats: NATS, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent's engine appends ``SubWorkflowStarted`` and dies before it sends the child's
    start (and before it acks what it took): the next owner sends it."""
    from actors.engine.batch import Batch

    carry_out = Batch._carry_out
    stuck = asyncio.Event()

    async def die_before_sending(self: Batch, work: Any) -> None:
        if work.reaction is not None and work.reaction.outbox:
            stuck.set()
            await asyncio.Event().wait()  # frozen here: appended, nothing sent, nothing acked
        await carry_out(self, work)

    monkeypatch.setattr(Batch, "_carry_out", die_before_sending)
    first = Engine(clean_nats, settings=FAST)
    await first.start()
    store = EventStore(clean_nats)
    await start_workflow(clean_nats, "wf-outbox", parent_with(child_running(OUT_OK)))
    await assert_eventually(stuck.is_set, timeout=20, message="the start was never decided")
    history = await store.history("wf-outbox")
    assert "job.sub.SubWorkflowStarted" in types(history)
    assert await store.history(child_id("wf-outbox", "sub", 1)) == []  # never sent
    await first.abandon()
    monkeypatch.setattr(Batch, "_carry_out", carry_out)
    second = Engine(clean_nats, settings=FAST)
    await second.start()
    try:
        history = await finished(store, "wf-outbox", timeout=30)
    finally:
        await second.stop()
    assert ended(history) == "WorkflowSucceeded", types(history)
    assert types(history).count("job.sub.SubWorkflowStarted") == 1
    await assert_invariants(store)
