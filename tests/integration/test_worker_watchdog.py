"""A worker that does not hear back from a job it started notices within seconds and says so,
and an abort ends within the kill grace whatever the job does.

The executor here plays a bug: its job ends (``ctx.mark_ended()``), then it never returns and
swallows every cancellation, as the cancellation watcher did before issue 17. The worker must not
hold the lease for ever: it logs an error, frees the slot and releases the message, and the job
runs again (on the one slot of this very worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from nats.aio.client import Client as NATS

from events.catalog import JobSpec, JobStarted, JobSucceeded
from sdk.worker import Worker
from sdk.worker.attempt import STUCK_AFTER
from sdk.worker.executors import ExecutionResult, Succeeded
from sdk.worker.job_context import JobContext
from tests.eventually import assert_eventually
from tests.jobs_harness import JobsHarness, fast_config


class EndsThenHangs:
    """First run: the job ends, the executor hangs until ``release``; later runs succeed."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def execute(self, spec: JobSpec, ctx: JobContext) -> ExecutionResult:
        self.calls += 1
        if self.calls > 1:
            return Succeeded(outputs={"run": str(self.calls)})
        ctx.mark_ended()
        while not self.release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await self.release.wait()
        return Succeeded(outputs={"run": "1"})


async def test_an_attempt_stuck_after_its_job_ended_is_released(
    clean_nats: NATS, nats_url: str
) -> None:
    harness = JobsHarness(clean_nats)
    executor = EndsThenHangs()
    # A long lease: only the watchdog can give the job back in time.
    worker = Worker(
        fast_config(nats_url, lease_ttl=60.0, heartbeat_interval=5.0), executor=executor
    )
    await worker.start()
    try:
        with structlog.testing.capture_logs() as logs:
            await harness.queue("wf", "job", run="true")
            started = time.monotonic()

            async def done() -> JobSucceeded:
                found = await harness.events("wf", "job", JobSucceeded)
                assert found, await harness.types("wf", "job")
                return found[0]

            succeeded = await assert_eventually(done, timeout=STUCK_AFTER + 5)
            took = time.monotonic() - started
        claims = await harness.events("wf", "job", JobStarted)
        assert [(c.epoch, c.worker_id) for c in claims] == [
            (1, worker.worker_id),
            (2, worker.worker_id),
        ]
        assert (succeeded.epoch, succeeded.outputs) == (2, {"run": "2"})
        assert took < STUCK_AFTER + 3, took
        errors = [e for e in logs if e["log_level"] == "error"]
        assert errors[0]["event"].startswith("a job ended but its attempt is stuck")
        assert errors[0]["job"] == "job" and errors[0]["epoch"] == 1
        assert "in execute" in errors[0]["stack"]  # says where it hangs
    finally:
        executor.release.set()
        await asyncio.wait_for(worker.stop(), 10)


class NeverStops:
    """A job that neither ends nor lets itself be stopped: every cancellation is swallowed."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def execute(self, spec: JobSpec, ctx: JobContext) -> ExecutionResult:
        self.started.set()
        while not self.release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await self.release.wait()
        return Succeeded()


async def test_an_abort_returns_within_the_kill_grace_whatever_the_job_does(
    clean_nats: NATS, nats_url: str
) -> None:
    """Before issue 17 the abort waited for the attempt for ever (it only set flags)."""
    harness = JobsHarness(clean_nats)
    executor = NeverStops()
    worker = Worker(fast_config(nats_url, kill_grace=1.0), executor=executor)
    await worker.start()
    try:
        await harness.queue("wf", "stubborn", run="true")
        await asyncio.wait_for(executor.started.wait(), 10)
        worker.request_shutdown()  # first signal: waits for the job (shutdown_grace 10 s)
        asked = time.monotonic()
        with structlog.testing.capture_logs() as logs:
            await asyncio.wait_for(worker.stop(graceful=False), 10)  # the second signal
        took = time.monotonic() - asked
        assert worker.aborted and worker.phase == "stopped"
        assert took < 1.0 + 1.0, took
        assert "running jobs did not stop in time: cancelling their attempts" in [
            e["event"] for e in logs
        ]
        assert await harness.types("wf", "stubborn") == ["JobQueued", "JobStarted"]
    finally:
        executor.release.set()
