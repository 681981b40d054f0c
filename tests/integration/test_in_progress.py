"""Long-running handlers: ``InProgress`` parks the job (no slot, no lease) and the engine's
durable timer queues it again with ``ctx.poll_count`` and ``ctx.progress_outputs``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from actors.engine import Engine, EngineSettings
from events.base import RecordedEvent
from events.catalog import JobParked, JobQueued
from events.store import EventStore
from sdk import InProgress
from sdk.worker import Worker
from sdk.worker.job_context import JobContext
from tests.engine_harness import cancel_workflow, ended, start_workflow, types
from tests.eventually import assert_eventually
from tests.jobs_harness import fast_config

SETTINGS = EngineSettings(ack_wait=5.0, poll_interval=0.2)


@pytest.fixture
async def engine(clean_nats: NATS) -> AsyncIterator[Engine]:
    running = Engine(clean_nats, settings=SETTINGS)
    await running.start()
    yield running
    await running.stop()


async def history_until(
    nc: NATS, wf: str, done: Any, timeout: float = 30, message: str = ""
) -> list[RecordedEvent]:
    store = EventStore(nc)

    async def probe() -> list[RecordedEvent] | None:
        history = await store.history(wf)
        return history if done(history) else None

    found: list[RecordedEvent] = await assert_eventually(
        probe, timeout=timeout, message=message or f"workflow {wf} never got there"
    )
    return found


def polling_worker(nats_url: str, seen: list[tuple[str, int, dict[str, str]]]) -> Worker:
    """One slot; handler ``remote`` parks twice (after 300 ms each), then succeeds."""
    worker = Worker(fast_config(nats_url, worker_id="w-poll", max_concurrent_jobs=1))

    @worker.job("remote")
    async def remote(ctx: JobContext, inputs: dict[str, Any]) -> Any:
        seen.append((ctx.job, ctx.poll_count, dict(ctx.progress_outputs)))
        if ctx.poll_count < 2:
            after = inputs.get("after", "300ms")
            return InProgress(callback_after=after, outputs={"step": ctx.poll_count + 1})
        return {"done": "yes", "steps": ctx.progress_outputs["step"]}

    return worker


async def test_a_parked_job_runs_again_with_its_poll_count_and_progress_without_a_slot(
    clean_nats: NATS, nats_url: str, engine: Engine
) -> None:
    seen: list[tuple[str, int, dict[str, str]]] = []
    worker = polling_worker(nats_url, seen)
    definition = {
        "name": "long",
        "jobs": {
            "a": {"uses": "remote"},
            "b": {"uses": "remote"},
            "after": {"needs": ["a"], "uses": "remote", "with": {"after": "0s"}},
        },
    }
    await worker.start()
    try:
        await start_workflow(clean_nats, "wf-long", definition)
        history = await history_until(clean_nats, "wf-long", ended)
    finally:
        await worker.stop()
    assert ended(history) == "WorkflowSucceeded"
    runs_of_a = [(count, progress) for job, count, progress in seen if job == "a"]
    assert runs_of_a == [(0, {}), (1, {"step": "1"}), (2, {"step": "2"})]
    kinds = types(history)
    # One slot, yet both were parked before either ended: a parked job holds no slot.
    first_end = min(kinds.index("job.a.JobSucceeded"), kinds.index("job.b.JobSucceeded"))
    assert kinds.index("job.a.JobParked") < first_end
    assert kinds.index("job.b.JobParked") < first_end
    parked = [r.event for r in history if isinstance(r.event, JobParked) and r.event.job == "a"]
    assert [(p.attempt, p.poll_count, p.outputs) for p in parked] == [
        (1, 1, {"step": "1"}),
        (1, 2, {"step": "2"}),
    ]
    requeued = [
        r.event
        for r in history
        if isinstance(r.event, JobQueued) and r.event.job == "a" and r.event.poll_count
    ]
    assert [(q.attempt, q.poll_count, q.progress) for q in requeued] == [
        (1, 1, {"step": "1"}),
        (1, 2, {"step": "2"}),
    ]
    succeeded = next(r.event for r in history if r.subject.endswith(".a.JobSucceeded"))
    assert succeeded.outputs == {"done": "yes", "steps": "2"}
    assert kinds.count("job.after.JobParked") == 2  # callback_after 0s works too


async def test_a_parked_job_survives_an_engine_restart(clean_nats: NATS, nats_url: str) -> None:
    seen: list[tuple[str, int, dict[str, str]]] = []
    worker = polling_worker(nats_url, seen)
    definition = {"name": "restart", "jobs": {"a": {"uses": "remote", "with": {"after": "2s"}}}}
    first = Engine(clean_nats, settings=SETTINGS)
    await first.start()
    await worker.start()
    try:
        await start_workflow(clean_nats, "wf-park-restart", definition)
        await history_until(
            clean_nats,
            "wf-park-restart",
            lambda h: "job.a.JobParked" in types(h),
            message="the job was never parked",
        )
        await first.stop()  # its in-process timer goes with it; the durable one stays
        second = Engine(clean_nats, settings=SETTINGS)
        await second.start()
        try:
            history = await history_until(clean_nats, "wf-park-restart", ended)
        finally:
            await second.stop()
    finally:
        await worker.stop()
    assert ended(history) == "WorkflowSucceeded"
    assert [count for _, count, _ in seen] == [0, 1, 2]


async def test_cancelling_withdraws_a_parked_job_at_once(
    clean_nats: NATS, nats_url: str, engine: Engine
) -> None:
    seen: list[tuple[str, int, dict[str, str]]] = []
    worker = polling_worker(nats_url, seen)
    definition = {"name": "cancel", "jobs": {"a": {"uses": "remote", "with": {"after": "1h"}}}}
    await worker.start()
    try:
        await start_workflow(clean_nats, "wf-park-cancel", definition)
        await history_until(clean_nats, "wf-park-cancel", lambda h: "job.a.JobParked" in types(h))
        await cancel_workflow(clean_nats, "wf-park-cancel")
        history = await history_until(clean_nats, "wf-park-cancel", ended, timeout=10)
    finally:
        await worker.stop()
    assert ended(history) == "WorkflowCancelled"
    assert types(history)[-2:] == ["job.a.JobCancelled", "wf.WorkflowCancelled"]
    assert len(seen) == 1
