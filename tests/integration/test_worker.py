"""The Worker runtime on a real nats-server: claims, results, leases, cancellation, logs."""

from __future__ import annotations

from nats.aio.client import Client as NATS

from events.catalog import JobStarted, JobSucceeded
from sdk.worker import Worker
from tests.eventually import assert_eventually
from tests.jobs_harness import JobsHarness, fast_config


async def test_shell_job_succeeds_with_outputs(clean_nats: NATS, nats_url: str) -> None:
    harness = JobsHarness(clean_nats)
    worker = Worker(fast_config(nats_url, worker_id="w-smoke"))
    await worker.start()
    try:
        await harness.queue("wf1", "build", run="echo hello; echo '::set-output version=1.2'")

        async def succeeded() -> JobSucceeded:
            found = await harness.events("wf1", "build", JobSucceeded)
            assert found, await harness.types("wf1", "build")
            return found[0]

        done = await assert_eventually(succeeded, timeout=10)
        assert done.outputs == {"version": "1.2"}
        started = await harness.events("wf1", "build", JobStarted)
        assert [s.epoch for s in started] == [1]
        assert started[0].worker_id == "w-smoke"
    finally:
        await worker.stop()
