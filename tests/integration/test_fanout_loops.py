"""A fan-out of a ``loop:`` job end to end: each instance loops on its own (the example), through
real engines, a real shell worker and a real nats-server, with an engine killed mid-way."""

from __future__ import annotations

import json
from pathlib import Path

from nats.aio.client import Client as NATS

from actors.definitions import load_workflow_file
from actors.definitions.mapping import definition_mapping
from actors.engine import Engine
from events.catalog import JobLooped, WorkflowSucceeded
from events.store import EventStore
from sdk.worker import Worker
from tests.claims import claims
from tests.engine_harness import ended, start_workflow, types
from tests.eventually import assert_eventually
from tests.integration.test_end_to_end import finished
from tests.integration.test_subworkflows import FAST, assert_invariants, event, worker  # noqa: F401

EXAMPLE = Path(__file__).parents[2] / "examples" / "fan_out_loop.yaml"


async def test_each_instance_loops_on_its_own_across_an_engine_killed_mid_way(
    clean_nats: NATS,
    worker: Worker,  # noqa: F811
) -> None:
    definition = definition_mapping(load_workflow_file(EXAMPLE))
    store = EventStore(clean_nats)
    first = Engine(clean_nats, settings=FAST)
    await first.start()
    await start_workflow(clean_nats, "wf-loops", definition)

    async def looped_once() -> bool:
        history = await store.history("wf-loops")
        assert any(isinstance(r.event, JobLooped) for r in history), "no iteration ended yet"
        return True

    await assert_eventually(looped_once, timeout=20)
    await first.abandon()  # dies as a killed process would: no acks, no hand-over
    second = Engine(clean_nats, settings=FAST)
    await second.start()
    try:
        history = await finished(store, "wf-loops", timeout=40)
    finally:
        await second.stop()
    assert ended(history) == "WorkflowSucceeded", types(history)
    # "a" is done at iteration 2, "bb" at 3, "ccc" at 4: each instance looped on its own.
    assert json.loads(event(history, WorkflowSucceeded).outputs["rounds"]) == ["2", "3", "4"]
    for index, runs in enumerate([2, 3, 4]):
        started = claims(history, f"poll-{index}")
        assert len({s.attempt for s in started}) == runs, (index, started)
    looped = [r.event for r in history if isinstance(r.event, JobLooped)]
    assert sorted((e.job, e.iteration) for e in looped) == [
        ("poll-0", 2),
        ("poll-1", 2),
        ("poll-1", 3),
        ("poll-2", 2),
        ("poll-2", 3),
        ("poll-2", 4),
    ]
    await assert_invariants(store)
