"""A short run's claim recorded inside its result (``WorkerConfig.claim_window``), on a real
nats-server: the worker runs before it starts, and what it appends depends on how the run goes.

The worker listens to cancel notices before any of these jobs is queued, so each dispatch may
run before its claim is appended (``sdk/worker/revoked.py``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from nats.aio.client import Client as NATS

from events import subjects
from events.catalog import Claim, JobStarted, JobSucceeded
from events.dispatch import LabelSet
from sdk.worker import Worker
from sdk.worker.job_context import JobContext
from tests.eventually import assert_eventually
from tests.jobs_harness import JobsHarness, fast_config, running
from tests.restarts import connected, own_server, restart_under

ANY = LabelSet.of(())


async def drained(nc: NATS, labelset: LabelSet = ANY) -> bool:
    """The label set's consumer has delivered and holds nothing any more (acked)."""
    info = await nc.jetstream().consumer_info(subjects.EVENTS_STREAM, labelset.consumer)
    return info.delivered.stream_seq > 0 and not info.num_pending and not info.num_ack_pending


async def types_become(harness: JobsHarness, wf: str, job: str, expected: list[str]) -> None:
    async def probe() -> bool:
        assert await harness.types(wf, job) == expected
        return True

    await assert_eventually(probe, timeout=15, interval=0.05)


async def test_a_short_run_appends_its_claim_inside_its_result(
    harness: JobsHarness, nats_url: str
) -> None:
    worker = Worker(fast_config(nats_url, worker_id="w-short"))
    async with running(worker):
        queued = await harness.queue("wf", "quick", run="true")
        await types_become(harness, "wf", "quick", ["JobQueued", "JobSucceeded"])
        await assert_eventually(lambda: drained(harness.nc))
    (success,) = await harness.events("wf", "quick", JobSucceeded)
    assert success.worker_id == "w-short" and success.epoch == 1
    assert isinstance(success.claimed, Claim)
    assert success.claimed.delivery == 1 and success.claimed.lease_ttl == 2.0
    assert queued.queued_at <= success.claimed.started_at <= success.ended_at
    (claim,) = await harness.events("wf", "quick", JobStarted)  # the claim it stands for
    assert (claim.worker_id, claim.epoch, claim.started_at) == (
        "w-short",
        1,
        success.claimed.started_at,
    )


async def test_a_run_longer_than_the_window_appends_its_claim_while_it_runs(
    harness: JobsHarness, nats_url: str
) -> None:
    worker = Worker(fast_config(nats_url, claim_window=0.2))
    release = asyncio.Event()

    @worker.job("long")
    async def long(ctx: JobContext) -> None:
        await release.wait()

    async with running(worker):
        await harness.queue("wf", "long", uses="long")
        await types_become(harness, "wf", "long", ["JobQueued", "JobStarted"])
        release.set()
        await types_become(harness, "wf", "long", ["JobQueued", "JobStarted", "JobSucceeded"])
    (success,) = await harness.events("wf", "long", JobSucceeded)
    assert success.claimed is None  # its claim is in the log already


async def test_a_run_that_logs_appends_its_claim_before_its_lines(
    harness: JobsHarness, nats_url: str
) -> None:
    worker = Worker(fast_config(nats_url, claim_window=5.0, lease_ttl=20.0))
    async with running(worker):
        await harness.queue("wf", "talks", run="echo hello")
        await types_become(harness, "wf", "talks", ["JobQueued", "JobStarted", "JobSucceeded"])
        (claim,) = await harness.events("wf", "talks", JobStarted)
        last = await harness.nc.jetstream().get_last_msg(
            subjects.LOGS_STREAM, subjects.log("wf", "talks")
        )
    assert b"hello" in (last.data or b"")
    assert b'"epoch":%d' % claim.epoch in (last.data or b"")


async def test_a_job_cancelled_while_it_runs_unclaimed_is_stopped_and_counts_for_nothing(
    harness: JobsHarness, nats_url: str
) -> None:
    # A long window, cancel checks rarer still: only the cancel notice makes it look.
    config = fast_config(
        nats_url, claim_window=5.0, lease_ttl=20.0, cancellation_check_interval=15.0
    )
    worker = Worker(config)
    began, stopped = asyncio.Event(), asyncio.Event()

    @worker.job("waits")
    async def waits(ctx: JobContext) -> None:
        began.set()
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()

    async with running(worker):
        await harness.queue("wf", "doomed", uses="waits")
        await asyncio.wait_for(began.wait(), 15)
        assert await harness.types("wf", "doomed") == ["JobQueued"]  # running, not claimed
        await harness.cancel("wf", "doomed")  # the log shows it queued: cancelled outright
        await asyncio.wait_for(stopped.wait(), 15)
        await assert_eventually(lambda: drained(harness.nc, LabelSet.of({"@waits"})))
    # Its claim found the cancel: nothing of the run was appended, and it is not run again.
    assert await harness.types("wf", "doomed") == ["JobQueued", "JobCancelled"]
    assert worker.tally.totals().get("abandoned", 0) == 1


async def test_a_job_the_worker_was_told_of_is_claimed_before_it_runs(
    harness: JobsHarness, nats_url: str
) -> None:
    worker = Worker(fast_config(nats_url))
    async with running(worker):
        # A notice for this job before its dispatch (as for a job ended while queued): the
        # worker does not run it unclaimed.
        await harness.nc.publish(subjects.cancel_notice("wf", "told"), b"")
        await assert_eventually(lambda: _told(worker, "wf", "told"))
        await harness.queue("wf", "told", run="true")
        await harness.queue("wf", "untold", run="true")
        await types_become(harness, "wf", "told", ["JobQueued", "JobStarted", "JobSucceeded"])
        await types_become(harness, "wf", "untold", ["JobQueued", "JobSucceeded"])


async def _told(worker: Worker, wf: str, job: str) -> bool:
    return not worker.revoked.may_run_unclaimed(wf, job, 10**12)


async def test_a_dispatch_older_than_the_workers_listening_is_claimed_first(
    harness: JobsHarness, nats_url: str
) -> None:
    await harness.queue("wf", "early", run="true")  # before the worker listens to notices
    async with running(Worker(fast_config(nats_url))):
        await types_become(harness, "wf", "early", ["JobQueued", "JobStarted", "JobSucceeded"])
        await harness.queue("wf", "later", run="true")
        await types_become(harness, "wf", "later", ["JobQueued", "JobSucceeded"])


async def test_a_zero_window_claims_before_every_run(harness: JobsHarness, nats_url: str) -> None:
    async with running(Worker(fast_config(nats_url, claim_window=0))):
        await harness.queue("wf", "eager", run="true")
        await types_become(harness, "wf", "eager", ["JobQueued", "JobStarted", "JobSucceeded"])


async def test_a_worker_is_deaf_while_disconnected_and_listens_again_once_back(
    tmp_path: Path,
) -> None:
    # Its first label set is registered after the server's restart: the worker must watch the
    # label sets again (nats-py's watch did not always come back), and run the job unclaimed.
    with own_server(tmp_path / "nats") as server:
        worker = Worker(fast_config(server.url))
        async with running(worker):
            assert worker.revoked.listening_from is not None
            await restart_under(worker, server)  # deaf while the server is down, then back
            async with connected(server) as nc:
                harness = JobsHarness(nc)
                await harness.queue("wf", "after", run="true")
                await types_become(harness, "wf", "after", ["JobQueued", "JobSucceeded"])
