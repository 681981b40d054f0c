"""A fan-out of a ``wait_for`` job end to end: each instance waits for the signal its item
names (``approve-${{ item }}``), sent with ``Client.signal``; real engines, a real shell worker,
a real nats-server, and an engine killed while instances wait."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from actors.definitions import load_workflow_file
from actors.definitions.mapping import definition_mapping
from actors.engine import Engine
from events.catalog import JobFailed, JobWaiting, WorkflowSucceeded
from events.errors import CommandRefused
from events.store import EventStore
from sdk.client import Client
from sdk.worker import Worker
from tests.engine_harness import ended, types
from tests.eventually import assert_eventually
from tests.integration.test_end_to_end import finished
from tests.integration.test_subworkflows import FAST, assert_invariants, event, worker  # noqa: F401

EXAMPLE = Path(__file__).parents[2] / "examples" / "rollout.yaml"


def rollout(timeout: str = "1h") -> dict[str, Any]:
    """The example, with the wait's timeout given."""
    raw = definition_mapping(load_workflow_file(EXAMPLE))
    raw["jobs"]["approve"]["wait_for"]["timeout"] = timeout
    return raw


async def waiting(store: EventStore, wf: str, count: int) -> list[JobWaiting]:
    history = await store.history(wf)
    waits = [r.event for r in history if isinstance(r.event, JobWaiting)]
    assert len(waits) == count, f"{len(waits)} of {count} instances wait"
    return waits


async def test_each_instance_resumes_on_its_own_signal_across_an_engine_killed_while_waiting(
    clean_nats: NATS,
    worker: Worker,  # noqa: F811
) -> None:
    client = Client(clean_nats)
    store = EventStore(clean_nats)
    first = Engine(clean_nats, settings=FAST)
    await first.start()
    wf = (await client.start(rollout())).workflow_id
    waits = await assert_eventually(lambda: waiting(store, wf, 3), timeout=20)
    assert [(w.job, w.signal) for w in waits] == [
        ("approve-0", "approve-eu"),
        ("approve-1", "approve-us"),
        ("approve-2", "approve-ap"),
    ]
    view = await client.status(wf)
    assert view.jobs["approve-1"].wait is not None
    assert view.jobs["approve-1"].wait.signal == "approve-us"
    assert (await client.signal(wf, "approve-us", {"by": "bo"}, "s-us")).changed
    with pytest.raises(CommandRefused, match="no job of it waits for signal 'deploy'"):
        await client.signal(wf, "deploy", {"by": "x"}, "s-x")
    await first.abandon()  # dies as a killed process would: no acks, no hand-over
    second = Engine(clean_nats, settings=FAST)
    await second.start()
    try:
        assert (await client.signal(wf, "approve-ap", {"by": "cy"}, "s-ap")).changed
        assert (await client.signal(wf, "approve-eu", {"by": "ann"}, "s-eu")).changed
        history = await finished(store, wf, timeout=30)
    finally:
        await second.stop()
    assert ended(history) == "WorkflowSucceeded", types(history)
    assert json.loads(event(history, WorkflowSucceeded).outputs["by"]) == ["ann", "bo", "cy"]
    await assert_invariants(store)


async def test_an_instance_whose_signal_never_comes_times_out_durably_and_fails_the_fan_out(
    clean_nats: NATS,
) -> None:
    client = Client(clean_nats)
    store = EventStore(clean_nats)
    first = Engine(clean_nats, settings=FAST)
    await first.start()
    wf = (await client.start(rollout(timeout="3s"))).workflow_id
    await assert_eventually(lambda: waiting(store, wf, 3), timeout=20)
    await client.signal(wf, "approve-eu", {"by": "ann"}, "s-eu")
    await client.signal(wf, "approve-us", {"by": "bo"}, "s-us")
    await first.stop()  # the in-process timer goes with the engine; the durable one stays
    second = Engine(clean_nats, settings=FAST)
    await second.start()
    try:
        history = await finished(store, wf, timeout=30)
    finally:
        await second.stop()
    assert ended(history) == "WorkflowFailed", types(history)
    [failed] = [r.event for r in history if isinstance(r.event, JobFailed) and r.event.timed_out]
    assert failed.job == "approve-2"
    assert failed.error == "no signal 'approve-ap' arrived within 3s (wait_for timeout)"
    assert "job.deploy.JobQueued" not in types(history)
    await assert_invariants(store)
