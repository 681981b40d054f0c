"""Fan-out instances whose Python handler returns ``InProgress``, through the real engine and a
real worker: a parked instance holds its place under ``max_parallel``, fail_fast and a cancel
withdraw it, and its result is gathered in item order once its callback ran it again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from actors.engine import Engine
from events.base import RecordedEvent
from events.store import EventStore
from sdk import InProgress
from sdk.worker import Worker
from sdk.worker.job_context import JobContext
from tests.engine_harness import cancel_workflow, ended, start_workflow, types
from tests.eventually import assert_eventually
from tests.integration.test_fanout import (
    assert_consistent,
    engine,  # noqa: F401  (the fixture)
    finished,
    most_active,
    outputs_of,
)
from tests.jobs_harness import fast_config


@pytest.fixture
async def runs() -> list[tuple[str, int]]:
    return []


@pytest.fixture
async def gate() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
async def worker(
    nats_url: str, runs: list[tuple[str, int]], gate: asyncio.Event
) -> AsyncIterator[Worker]:
    """Handler ``remote``: parks once (``with.after``), then succeeds with ``v`` = its item;
    item ``"boom"`` fails once the test opens ``gate``."""
    running = Worker(fast_config(nats_url, worker_id="w-park-fan", max_concurrent_jobs=4))

    @running.job("remote")
    async def remote(ctx: JobContext, inputs: dict[str, Any]) -> Any:
        runs.append((ctx.job, ctx.poll_count))
        if inputs["item"] == "boom":
            await gate.wait()
            raise RuntimeError("boom")
        if ctx.poll_count == 0:
            return InProgress(callback_after=inputs["after"], outputs={"seen": inputs["item"]})
        return {"v": f"{ctx.progress_outputs['seen']}!"}

    await running.start()
    yield running
    await running.stop()


def _fan(name: str, items: list[str], after: str, max_parallel: int) -> dict[str, Any]:
    return {
        "name": name,
        "jobs": {
            "each": {
                "for_each": items,
                "max_parallel": max_parallel,
                "uses": "remote",
                "with": {"item": "${{ item }}", "after": after},
            },
            "after": {"needs": ["each"], "run": "true"},
        },
    }


async def test_parked_instances_count_toward_max_parallel_and_their_results_are_gathered(
    clean_nats: NATS,
    engine: Engine,  # noqa: F811
    worker: Worker,
    runs: list[tuple[str, int]],
) -> None:
    definition = _fan("park-fan", ["a", "b", "c", "d", "e"], "300ms", max_parallel=2)
    await start_workflow(clean_nats, "wf-park-fan", definition)
    history = await finished(EventStore(clean_nats), "wf-park-fan", timeout=60)
    assert ended(history) == "WorkflowSucceeded", types(history)
    kinds = types(history)
    assert all(kinds.count(f"job.each-{i}.JobParked") == 1 for i in range(5))
    # Four slots free, yet never more than two instances between queued and ended: parked ones
    # count (most_active drops an instance only at its end, not when it parks).
    assert most_active(history, "each") == 2
    assert outputs_of(history, "each") == {"v": '["a!","b!","c!","d!","e!"]'}
    assert sorted(runs) == sorted([(f"each-{i}", n) for i in range(5) for n in (0, 1)])
    assert_consistent(history)


async def test_fail_fast_withdraws_a_parked_instance(
    clean_nats: NATS,
    engine: Engine,  # noqa: F811
    worker: Worker,
    runs: list[tuple[str, int]],
    gate: asyncio.Event,
) -> None:
    definition = _fan("park-ff", ["a", "boom", "c"], "1h", max_parallel=2)
    store = EventStore(clean_nats)

    async def parked_first() -> bool:
        return "job.each-0.JobParked" in types(await store.history("wf-park-ff"))

    await start_workflow(clean_nats, "wf-park-ff", definition)
    await assert_eventually(parked_first, timeout=20, message="each-0 never parked")
    gate.set()  # now each-1 fails
    history = await finished(store, "wf-park-ff", timeout=30)
    assert ended(history) == "WorkflowFailed"
    kinds = types(history)
    # Parked for an hour, it is withdrawn before the fan-out ends, not left to its callback.
    assert kinds.index("job.each-0.JobCancelled") < kinds.index("job.each.JobFannedIn")
    assert not any(kind.startswith("job.each-2.") for kind in kinds)
    assert ("each-0", 1) not in runs
    assert_consistent(history)


async def test_cancelling_the_workflow_withdraws_parked_instances(
    clean_nats: NATS,
    engine: Engine,  # noqa: F811
    worker: Worker,
) -> None:
    definition = _fan("park-cancel", ["a", "b", "c"], "1h", max_parallel=2)
    store = EventStore(clean_nats)
    await start_workflow(clean_nats, "wf-park-cancel", definition)

    async def both_parked() -> list[RecordedEvent] | None:
        history = await store.history("wf-park-cancel")
        kinds = types(history)
        parked = "job.each-0.JobParked" in kinds and "job.each-1.JobParked" in kinds
        return history if parked else None

    history = await assert_eventually(both_parked, timeout=20, message="never both parked")
    assert not any(kind.startswith("job.each-2.") for kind in types(history))  # max_parallel
    await cancel_workflow(clean_nats, "wf-park-cancel")
    history = await finished(store, "wf-park-cancel", timeout=30)
    assert ended(history) == "WorkflowCancelled"
    kinds = types(history)
    assert kinds.count("job.each-0.JobCancelled") == kinds.count("job.each-1.JobCancelled") == 1
    assert kinds.index("job.each-1.JobCancelled") < kinds.index("job.each.JobCancelled")
    assert not any(kind.startswith("job.each-2.") for kind in kinds)
    assert_consistent(history)
