"""Workflow outputs, ``set``, ``sleep``/``until`` and ``needs_at_least`` through the real engine
on a real nats-server: with a real worker, across an engine restart, and cancelled."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS

from events.base import RecordedEvent
from events.catalog import JobSleepStarted, JobSucceeded, WorkflowSucceeded
from events.errors import JetworkError
from events.store import EventStore
from sdk.builder import Workflow
from sdk.client import Client
from sdk.worker import Worker
from tests.engine_harness import (
    RecordingDispatcher,
    cancel_workflow,
    ended,
    running_engine,
    start_workflow,
    types,
)
from tests.eventually import assert_eventually
from tests.jobs_harness import fast_config

STEPS = {
    "name": "steps",
    "inputs": {"version": {"default": "1.0"}},
    "outputs": {
        "tag": "${{ needs.meta.outputs.tag }}",
        "built": "${{ needs.build.outputs.artifact }}",
        "quorum": "${{ needs.publish.outputs.seen }}",
    },
    "jobs": {
        "meta": {"set": {"tag": "v${{ inputs.version }}"}},
        "build": {
            "needs": ["meta"],
            "run": 'echo "::set-output artifact=app-${{ needs.meta.outputs.tag }}.tgz"',
        },
        "pause": {"needs": ["build"], "sleep": "1s"},
        "m1": {"needs": ["pause"], "run": "true"},
        "m2": {"needs": ["pause"], "run": "true"},
        "m3": {"needs": ["pause"], "run": "exit 3", "on_failure": "continue"},
        "publish": {
            "needs_at_least": {"count": 2, "of": ["m1", "m2", "m3"]},
            "run": 'echo "::set-output seen=${{ needs.m1.result }}"',
        },
    },
}


@pytest.fixture
async def worker(nats_url: str) -> AsyncIterator[Worker]:
    running = Worker(fast_config(nats_url, worker_id="w-steps"))
    await running.start()
    yield running
    await running.stop()


async def finished(store: EventStore, wf: str, timeout: float = 30) -> list[RecordedEvent]:
    async def probe() -> list[RecordedEvent] | None:
        history = await store.history(wf)
        return history if ended(history) else None

    found: list[RecordedEvent] = await assert_eventually(
        probe, timeout=timeout, message=f"workflow {wf} never ended"
    )
    return found


def _event(history: list[RecordedEvent], kind: type, job: str | None = None) -> RecordedEvent:
    return next(
        r
        for r in history
        if isinstance(r.event, kind) and (job is None or getattr(r.event, "job", None) == job)
    )


async def test_every_step_kind_runs_with_a_real_worker_and_the_result_is_the_outputs(
    clean_nats: NATS, nats_url: str, worker: Worker
) -> None:
    dispatcher = RecordingDispatcher()
    engine = await running_engine(clean_nats, dispatcher)
    try:
        await start_workflow(clean_nats, "wf-steps", STEPS, inputs={"version": "2.0"})
        history = await finished(EventStore(clean_nats), "wf-steps")
        view = await Client(clean_nats).status("wf-steps")
    finally:
        await engine.stop()
    assert ended(history) == "WorkflowSucceeded", types(history)
    expected = {"tag": "v2.0", "built": "app-v2.0.tgz", "quorum": "success"}
    assert _event(history, WorkflowSucceeded).event.outputs == expected
    assert view.outputs == expected
    assert view.jobs["meta"].outputs == {"tag": "v2.0"}
    # The set and sleep jobs never reached a worker: no JobQueued, no JobStarted for them.
    kinds = types(history)
    for inline in ("meta", "pause"):
        assert not [k for k in kinds if k.startswith(f"job.{inline}.Job") and "Queued" in k]
        assert f"job.{inline}.JobStarted" not in kinds
    slept = _event(history, JobSleepStarted, "pause")
    woke = _event(history, JobSucceeded, "pause")
    assert woke.time >= slept.event.until
    assert view.jobs["m3"].status == "failed"


async def test_a_sleep_ends_on_its_durable_timer_after_the_engine_restarted(
    clean_nats: NATS,
) -> None:
    store = EventStore(clean_nats)
    dispatcher = RecordingDispatcher()
    definition = {
        "name": "nap",
        "outputs": {"woke": "${{ needs.nap.outputs.slept_until }}"},
        "jobs": {"nap": {"sleep": "3s"}},
    }
    # No in-process timers: only the schedule stored in the stream can end the sleep.
    first = await running_engine(clean_nats, dispatcher, in_process_horizon=0)
    try:
        await start_workflow(clean_nats, "wf-nap", definition)

        async def sleeping() -> bool:
            return "job.nap.JobSleepStarted" in types(await store.history("wf-nap"))

        await assert_eventually(sleeping, timeout=10)
    finally:
        await first.stop()
    # The engine is gone while the timer is due; a new one takes the partition over.
    second = await running_engine(clean_nats, dispatcher, in_process_horizon=0)
    try:
        history = await finished(store, "wf-nap", timeout=30)
    finally:
        await second.stop()
    assert ended(history) == "WorkflowSucceeded"
    slept = _event(history, JobSleepStarted, "nap")
    woke = _event(history, JobSucceeded, "nap")
    assert woke.time >= slept.event.until
    assert types(history).count("job.nap.JobSucceeded") == 1
    outputs = _event(history, WorkflowSucceeded).event.outputs
    assert outputs == {"woke": slept.event.until.isoformat()}


async def test_cancelling_a_workflow_cancels_its_sleeping_job(clean_nats: NATS) -> None:
    store = EventStore(clean_nats)
    dispatcher = RecordingDispatcher()
    definition = {
        "name": "long-nap",
        "jobs": {"nap": {"sleep": "1h"}, "after": {"needs": ["nap"], "run": "true"}},
    }
    engine = await running_engine(clean_nats, dispatcher)
    try:
        await start_workflow(clean_nats, "wf-long-nap", definition)

        async def sleeping() -> bool:
            return "job.nap.JobSleepStarted" in types(await store.history("wf-long-nap"))

        await assert_eventually(sleeping, timeout=10)
        await cancel_workflow(clean_nats, "wf-long-nap", reason="no time")
        history = await finished(store, "wf-long-nap")
    finally:
        await engine.stop()
    assert ended(history) == "WorkflowCancelled"
    assert "job.nap.JobCancelled" in types(history)
    assert "job.after.JobQueued" not in types(history)


async def test_the_client_s_handle_gives_the_workflow_s_result(
    clean_nats: NATS, worker: Worker
) -> None:
    dispatcher = RecordingDispatcher()
    engine = await running_engine(clean_nats, dispatcher)
    client = Client(clean_nats)
    built = Workflow("result", outputs={"answer": "${{ needs.ask.outputs.answer }}"})
    built.job("ask", set_={"answer": "${{ format('{0}{1}', 4, 2) }}"})
    broken = Workflow("no-result")
    broken.job("fail", run="exit 1")
    try:
        assert await (await client.start(built)).result(timeout=15) == {"answer": "42"}
        with pytest.raises(JetworkError, match="failed: 1 job"):
            await (await client.start(broken)).result(timeout=15)
    finally:
        await engine.stop()
