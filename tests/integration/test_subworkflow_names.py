"""``workflow: NAME[@VERSION]`` end to end: registered definitions looked up when the parent
starts (``Client.start``, the CLI, ``POST /api/workflows``), pinned in what the parent records,
and run by real engines, a real shell worker and a real nats-server; a registration while the
parent runs, and an engine killed mid-way, change nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from nats.aio.client import Client as NATS

from actors.engine import Engine
from actors.scheduler import Ticker, run_id
from events import subjects
from events.catalog import JobStarted, SubWorkflowStarted, WorkflowStarted, WorkflowSucceeded
from events.errors import InvalidWorkflow
from events.schedule_store import TickDue
from events.store import EventStore
from sdk.cli import main
from sdk.client import Client
from sdk.worker import Worker
from tests.engine_harness import ended, succeed, types
from tests.eventually import assert_eventually
from tests.integration.test_control import Rig, rig  # noqa: F401  (the fixture)
from tests.integration.test_end_to_end import finished
from tests.integration.test_gateway_api import http  # noqa: F401  (the fixture)
from tests.integration.test_subworkflows import FAST, assert_invariants, event
from tests.jobs_harness import fast_config

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture
async def worker(nats_url: str) -> AsyncIterator[Worker]:
    running = Worker(fast_config(nats_url, worker_id="w-shell"))
    await running.start()
    yield running
    await running.stop()


def greeter(word: str, *, slow: bool = False) -> dict[str, Any]:
    pause = "sleep 2; " if slow else ""
    return {
        "name": "greeter",
        "inputs": {"who": {"required": True}},
        "jobs": {"greet": {"run": f'{pause}echo "::set-output text={word} ${{{{ inputs.who }}}}"'}},
        "outputs": {"text": "${{ needs.greet.outputs.text }}"},
    }


def parent(ref: str) -> dict[str, Any]:
    return {
        "name": "parent",
        "jobs": {"greet": {"workflow": ref, "with": {"who": "ann"}}},
        "outputs": {"text": "${{ needs.greet.outputs.text }}"},
    }


async def test_a_name_runs_the_version_latest_at_the_start_through_a_registration_and_a_restart(
    clean_nats: NATS, nats_url: str, worker: Worker
) -> None:
    client = Client(clean_nats)
    store = EventStore(clean_nats)
    await client.register_definition(greeter("one"))
    await client.register_definition(greeter("two", slow=True))
    first = Engine(clean_nats, settings=FAST)
    await first.start()
    handle = await client.start(parent("greeter"))
    wf = handle.workflow_id
    history = await assert_eventually(
        lambda: _with(store, wf, SubWorkflowStarted), timeout=20, message="no child started"
    )
    child = event(history, SubWorkflowStarted)
    assert child.spec.workflow == "greeter@2"

    async def child_job_running() -> bool:
        return any(isinstance(r.event, JobStarted) for r in await store.history(child.child_id))

    await assert_eventually(child_job_running, timeout=20, message="the child never ran")
    # While the child runs: a newer version, and the engine dies as a killed process would.
    stored, _ = await client.register_definition(greeter("three"))
    assert stored.reference() == "greeter@3"
    await first.abandon()
    second = Engine(clean_nats, settings=FAST)
    await second.start()
    try:
        history = await finished(store, wf, timeout=30)
        assert ended(history) == "WorkflowSucceeded", types(history)
        assert event(history, WorkflowSucceeded).outputs == {"text": "two ann"}
        recorded = event(history, WorkflowStarted).definition
        assert recorded.jobs["greet"].workflow == "greeter@2"
        assert list(recorded.workflows) == ["greeter@2"]
        started = event(await store.history(child.child_id), WorkflowStarted)
        assert (started.definition.name, started.definition.version) == ("greeter", 2)
        view = await client.status(wf)
        assert view.jobs["greet"].child_workflow == "greeter@2"
        assert view.jobs["greet"].child_workflow_id == child.child_id
        shown = await asyncio.to_thread(
            CliRunner().invoke, main, ["status", wf, "--nats", nats_url]
        )
        assert shown.exit_code == 0 and "(greeter@2)" in shown.output, shown.output
        # A start after the registration runs the new latest; NAME@VERSION runs that one.
        later = await client.start(parent("greeter"))
        pinned = await client.start(parent("greeter@1"))
        assert (await later.wait(timeout=30)).outputs == {"text": "three ann"}
        assert (await pinned.wait(timeout=30)).outputs == {"text": "one ann"}
    finally:
        await second.stop()
    await assert_invariants(store)


async def test_an_unknown_name_or_version_is_refused_at_the_start_naming_the_job(
    clean_nats: NATS,
) -> None:
    client = Client(clean_nats)
    await client.register_definition(greeter("one"))
    with pytest.raises(InvalidWorkflow) as caught:
        await client.start(parent("greeter@5"))
    assert caught.value.problems == [
        "jobs.greet.workflow: greeter@5 is not registered (registered: versions 1) (jetwork "
        "definitions register FILE registers it; list shows them)"
    ]
    assert await client.list() == []  # nothing was started


async def test_the_cli_runs_the_example_naming_the_registered_example_child(
    clean_nats: NATS, nats_url: str, worker: Worker
) -> None:
    registered = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        ["definitions", "register", str(EXAMPLES / "child.yaml"), "--nats", nats_url],
    )
    assert registered.exit_code == 0 and "child@1" in registered.output, registered.output
    engine = Engine(clean_nats, settings=FAST)
    await engine.start()
    try:
        result = await asyncio.to_thread(
            CliRunner().invoke,
            main,
            ["run", str(EXAMPLES / "parent_named.yaml"), "--wait", "--json", "--nats", nats_url],
        )
    finally:
        await engine.stop()
    assert result.exit_code == 0, result.output
    final = json.loads(result.output)
    assert final["outputs"] == {"greeting": "hello named", "again": "hello 11 letters"}
    assert {job["child_workflow"] for job in final["jobs"].values()} == {"child@1"}


async def test_a_registered_parent_started_over_http_pins_the_children_it_names(
    http: httpx.AsyncClient,  # noqa: F811
    clean_nats: NATS,
) -> None:
    child = {"name": "notify", "jobs": {"send": {"run": "echo sent", "labels": ["http"]}}}
    release = {"name": "release", "jobs": {"tell": {"workflow": "notify"}}}
    for body in (child, release):
        answer = await http.post("/api/definitions", json={"workflow": body})
        assert answer.status_code == 201, answer.text
    started = await http.post("/api/workflows", json={"definition": "release"})
    assert started.status_code == 201, started.text
    wf = started.json()["workflow_id"]
    history = await assert_eventually(lambda: _with(EventStore(clean_nats), wf, WorkflowStarted))
    recorded = event(history, WorkflowStarted).definition
    assert recorded.jobs["tell"].workflow == "notify@1"
    assert recorded.workflows["notify@1"].version == 1
    gone = {"name": "other", "jobs": {"tell": {"workflow": "nobody"}}}
    refused = await http.post("/api/workflows", json={"workflow": gone})
    assert refused.status_code == 422, refused.text
    assert "jobs.tell.workflow: no definition named 'nobody'" in refused.text


async def _with(store: EventStore, wf: str, kind: type[Any]) -> list[Any]:
    history = await store.history(wf)
    assert any(isinstance(r.event, kind) for r in history), f"no {kind.__name__} yet"
    return history


async def test_a_schedule_tick_runs_the_version_registered_at_the_tick_or_says_why_not(
    rig: Rig,  # noqa: F811
) -> None:
    await rig.start(succeed)
    client = rig.client
    leaf = {"name": "leaf", "jobs": {"a": {"run": "echo one"}}}
    await client.register_definition(leaf)
    every = {"schedule": [{"every": "1h"}]}
    with pytest.raises(InvalidWorkflow, match=r"jobs\.s\.workflow: no definition named 'nobody'"):
        await client.add_schedule({"name": "bad", "jobs": {"s": {"workflow": "nobody"}}, **every})
    await client.add_schedule({"name": "nightly", "jobs": {"s": {"workflow": "leaf"}}, **every})
    await client.register_definition({**leaf, "jobs": {"a": {"run": "echo two"}}})
    entry = await client.schedule("nightly")
    first = entry.next_tick
    assert first is not None
    ticker = Ticker(rig.nc, clock=lambda: first)
    plan = await ticker.tick(TickDue(name="nightly", generation=entry.generation, due=first))
    assert plan is not None and plan.run == entry.next_tick
    history = await rig.until(run_id("nightly", plan.run), "wf.WorkflowStarted")
    assert event(history, WorkflowStarted).definition.jobs["s"].workflow == "leaf@2"
    # The name gone from the registry (an operator purged it): the next tick starts nothing.
    kv = await rig.nc.jetstream().key_value(subjects.KV_DEFINITIONS)
    for key in ("leaf.1", "leaf.2"):
        await kv.purge(key)
    due = plan.next
    late = Ticker(rig.nc, clock=lambda: due)
    assert await late.tick(TickDue(name="nightly", generation=entry.generation, due=due))
    after = await client.schedule("nightly")
    assert after.note is not None and after.note.startswith("tick not run: jobs.s.workflow: ")
    assert after.last_run == run_id("nightly", plan.run)  # still the run before
    assert not await rig.store.history(run_id("nightly", due))
