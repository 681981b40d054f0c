"""A fan-out of a ``workflow:`` job end to end: one child workflow per instance, through real
engines, a real shell worker and a real nats-server; an engine killed while the children run,
and a cancelled parent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from actors._child_runs import child_id
from actors.definitions import load_workflow_file
from actors.definitions.mapping import definition_mapping
from actors.engine import Engine
from events.catalog import JobStarted, SubWorkflowStarted, WorkflowStarted, WorkflowSucceeded
from events.store import EventStore
from sdk.client import Client
from sdk.worker import Worker
from tests.engine_harness import cancel_workflow, ended, start_workflow, types
from tests.eventually import assert_eventually
from tests.integration.test_end_to_end import finished
from tests.integration.test_subworkflows import (  # noqa: F401
    FAST,
    assert_invariants,
    engines,
    event,
    worker,
)

EXAMPLES = Path(__file__).parents[2] / "examples"


def children(history: list[Any]) -> list[SubWorkflowStarted]:
    return [r.event for r in history if isinstance(r.event, SubWorkflowStarted)]


async def running_jobs(store: EventStore, ids: list[str]) -> bool:
    for child in ids:
        history = await store.history(child)
        assert any(isinstance(r.event, JobStarted) for r in history), f"{child} not running"
    return True


async def test_the_example_runs_one_child_per_item_and_gathers_their_outputs(
    clean_nats: NATS,
    engines: list[Engine],  # noqa: F811
    worker: Worker,  # noqa: F811
) -> None:
    definition = definition_mapping(load_workflow_file(EXAMPLES / "fan_out_children.yaml"))
    store = EventStore(clean_nats)
    await start_workflow(clean_nats, "wf-fan", definition)
    history = await finished(store, "wf-fan")
    assert ended(history) == "WorkflowSucceeded", types(history)
    assert [c.child_id for c in children(history)] == [
        child_id("wf-fan", f"greet-{i}", 1) for i in range(3)
    ]
    for index, name in enumerate(["ann", "bo", "cy"]):
        started = event(await store.history(child_id("wf-fan", f"greet-{index}", 1)),
                        WorkflowStarted)  # fmt: skip
        assert started.inputs == {"who": f"{name} (#{index})"}
        assert started.parent is not None and started.parent.job == f"greet-{index}"
    outputs = event(history, WorkflowSucceeded).outputs
    assert json.loads(outputs["greetings"]) == ["hello ann (#0)", "hello bo (#1)", "hello cy (#2)"]
    assert json.loads(outputs["letters"]) == ["14", "13", "13"]
    await assert_invariants(store)


async def test_registered_children_fanned_out_survive_an_engine_killed_while_they_run(
    clean_nats: NATS,
    worker: Worker,  # noqa: F811
) -> None:
    client = Client(clean_nats)
    store = EventStore(clean_nats)
    await client.register_definition(
        {
            "name": "square",
            "inputs": {"n": {"required": True}},
            "jobs": {
                "calc": {"run": 'sleep 1; n=${{ inputs.n }}; echo "::set-output sq=$((n * n))"'}
            },
            "outputs": {"sq": "${{ needs.calc.outputs.sq }}"},
        }
    )
    first = Engine(clean_nats, settings=FAST)
    await first.start()
    handle = await client.start(
        {
            "name": "squares",
            "jobs": {
                "each": {
                    "for_each": [1, 2, 3, 4],
                    "max_parallel": 2,
                    "workflow": "square",
                    "with": {"n": "${{ item }}"},
                }
            },
            "outputs": {"squares": "${{ needs.each.outputs.sq }}"},
        }
    )
    wf = handle.workflow_id
    first_two = [child_id(wf, f"each-{i}", 1) for i in range(2)]
    await assert_eventually(lambda: running_jobs(store, first_two), timeout=20)
    await first.abandon()  # dies as a killed process would: no acks, no hand-over
    second = Engine(clean_nats, settings=FAST)
    await second.start()
    try:
        history = await finished(store, wf, timeout=40)
    finally:
        await second.stop()
    assert ended(history) == "WorkflowSucceeded", types(history)
    assert json.loads(event(history, WorkflowSucceeded).outputs["squares"]) == ["1", "4", "9", "16"]
    assert sorted(c.job for c in children(history)) == [f"each-{i}" for i in range(4)]  # once each
    assert {c.spec.workflow for c in children(history)} == {"square@1"}
    await assert_invariants(store)


async def test_cancelling_the_parent_cancels_every_running_child(
    clean_nats: NATS,
    engines: list[Engine],  # noqa: F811
    worker: Worker,  # noqa: F811
) -> None:
    definition = {
        "name": "slow-fan",
        "jobs": {
            "each": {
                "for_each": ["a", "b"],
                "workflow": "./slow.yaml",
                "with": {"x": "${{ item }}"},
            }
        },
        "workflows": {
            "./slow.yaml": {
                "name": "slow",
                "inputs": {"x": {}},
                "jobs": {"wait": {"run": "exec sleep 60"}},
            }
        },
    }
    store = EventStore(clean_nats)
    await start_workflow(clean_nats, "wf-stop", definition)
    ids = [child_id("wf-stop", f"each-{i}", 1) for i in range(2)]

    async def both_started_one_running() -> bool:
        histories = [await store.history(child) for child in ids]
        assert all(h and isinstance(h[0].event, WorkflowStarted) for h in histories), "starting"
        assert any(isinstance(r.event, JobStarted) for h in histories for r in h), "none running"
        return True

    # (One worker slot: one child's job runs, the other's waits for it.)
    await assert_eventually(both_started_one_running, timeout=20)
    await cancel_workflow(clean_nats, "wf-stop")
    history = await finished(store, "wf-stop", timeout=30)
    assert ended(history) == "WorkflowCancelled", types(history)
    for child in ids:
        assert ended(await store.history(child)) == "WorkflowCancelled"
    await assert_invariants(store)
