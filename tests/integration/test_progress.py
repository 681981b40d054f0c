"""Per-attempt progress: ``ctx.progress(frame)`` on the real server, read back with
``Client.progress``, ``Client.progress_summaries``, ``jetwork status`` and ``jetwork logs
--progress``; a parked attempt carries on from its summary."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from click.testing import CliRunner
from nats.aio.client import Client as NATS

from actors.engine import Engine, EngineSettings
from sdk import InProgress
from sdk.cli import main
from sdk.client import Client
from sdk.errors import WorkflowNotStarted
from sdk.worker import Worker
from sdk.worker.job_context import JobContext
from tests.eventually import assert_eventually
from tests.jobs_harness import fast_config


@pytest.fixture
async def engine(clean_nats: NATS) -> AsyncIterator[Engine]:
    running = Engine(clean_nats, settings=EngineSettings(ack_wait=5.0, poll_interval=0.2))
    await running.start()
    yield running
    await running.stop()


async def test_frames_fold_into_a_summary_that_survives_parking(
    clean_nats: NATS, nats_url: str, engine: Engine
) -> None:
    errors: list[str] = []
    worker = Worker(fast_config(nats_url, worker_id="w-progress"))

    @worker.job("encode")
    async def encode(ctx: JobContext, inputs: dict[str, Any]) -> Any:
        if ctx.poll_count == 0:
            ctx.progress({"stage": "upload", "pct": 10, "tmp": "x"})
            ctx.progress({"pct": 40, "tmp": None, "detail": {"frames": 100}})
            try:
                ctx.progress({"big": "y" * 2_000_000})
            except ValueError as exc:
                errors.append(str(exc))
            return InProgress(callback_after="200ms")
        ctx.progress({"stage": "mux", "pct": 100, "detail": {"codec": "av1"}})
        return {"done": "yes"}

    @worker.job("sync-steps")
    def steps(ctx: JobContext, inputs: dict[str, Any]) -> None:
        for step in range(3):  # a sync handler: from its thread
            ctx.progress({"step": step})

    async with await Client.connect(nats_url) as client:
        await worker.start()
        try:
            jobs = {"encode": {"uses": "encode"}, "steps": {"uses": "sync-steps"}}
            run = await client.start({"name": "progress", "jobs": jobs})
            view = await client.wait(run.workflow_id, timeout=30)
        finally:
            await worker.stop()
        assert view.status == "succeeded"
        wf = run.workflow_id
        frames = [f async for f in client.progress(wf, "encode")]
        summaries = await client.progress_summaries(wf)
        followed = [f async for f in client.progress(wf, "steps", follow=True)]
    assert [(f.attempt, f.seq) for f in frames] == [(1, 1), (1, 2), (1, 3)]
    assert frames[0].frame == {"stage": "upload", "pct": 10, "tmp": "x"}
    assert frames[1].summary == {"stage": "upload", "pct": 40, "detail": {"frames": 100}}
    assert frames[2].epoch == 2  # the run after parking continued the attempt's summary
    final = {"stage": "mux", "pct": 100, "detail": {"frames": 100, "codec": "av1"}}
    assert frames[2].summary == final
    assert summaries == {"encode": final, "steps": {"step": 2}}
    assert [f.frame for f in followed] == [{"step": 0}, {"step": 1}, {"step": 2}]
    assert len(errors) == 1 and "over the limit" in errors[0]

    status = await asyncio.to_thread(CliRunner().invoke, main, ["status", wf, "--nats", nats_url])
    assert status.exit_code == 0, status.output
    assert 'encode: {"stage":"mux","pct":100,"detail":{"frames":100,"codec":"av1"}}' in (
        status.output
    )
    logs = await asyncio.to_thread(
        CliRunner().invoke, main, ["logs", "--progress", wf, "steps", "--nats", nats_url]
    )
    assert logs.exit_code == 0, logs.output
    assert logs.output.splitlines() == [
        '[attempt 1 #1] {"step":0}',
        '[attempt 1 #2] {"step":1}',
        '[attempt 1 #3] {"step":2}',
    ]


async def test_following_progress_ends_with_the_job(
    clean_nats: NATS, nats_url: str, engine: Engine
) -> None:
    release = asyncio.Event()
    worker = Worker(fast_config(nats_url, worker_id="w-follow"))

    @worker.job("slow")
    async def slow(ctx: JobContext, inputs: dict[str, Any]) -> None:
        ctx.progress({"phase": "started"})
        await release.wait()
        ctx.progress({"phase": "done"})

    async with await Client.connect(nats_url) as client:
        await worker.start()
        try:
            run = await client.start({"name": "follow", "jobs": {"s": {"uses": "slow"}}})

            async def started() -> bool:
                try:
                    return bool(await client.status(run.workflow_id))
                except WorkflowNotStarted:
                    return False

            await assert_eventually(started, timeout=10)  # its jobs are known from then on
            seen: list[dict[str, Any]] = []

            async def tail() -> None:
                async for frame in client.progress(run.workflow_id, "s", follow=True):
                    seen.append(frame.summary)

            tailing = asyncio.create_task(tail())
            await assert_eventually(
                lambda: seen == [{"phase": "started"}], timeout=10, message=f"seen {seen}"
            )
            release.set()
            await asyncio.wait_for(tailing, timeout=15)  # ends once the job has ended
        finally:
            await worker.stop()
    assert seen == [{"phase": "started"}, {"phase": "done"}]
