"""Worker lifecycle listeners and handler hooks on a real nats-server (``worker.on``,
``@worker.job(..., on_success=, on_failure=)``): each hears what the log records, after it is
recorded, and a listener that raises changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from nats.aio.client import Client as NATS

from events.catalog import JobFailed, JobSucceeded
from events.definition import RetryPolicy
from sdk.worker import Worker
from sdk.worker.handlers import PermanentError
from sdk.worker.job_context import JobContext
from sdk.worker.lifecycle import JobEnded, JobStarted
from tests.eventually import assert_eventually
from tests.jobs_harness import JobsHarness, fast_config


@pytest.fixture
def harness(clean_nats: NATS) -> JobsHarness:
    return JobsHarness(clean_nats)


async def test_listeners_and_hooks_hear_what_the_log_records(
    harness: JobsHarness, nats_url: str
) -> None:
    worker = Worker(fast_config(nats_url))
    heard: list[tuple[str, str, Any]] = []
    recorded_first: list[bool] = []

    async def on_success(event: JobEnded) -> None:
        # A hook runs once the result is in the log.
        recorded_first.append(bool(await harness.events("wf", event.ref.job, JobSucceeded)))
        heard.append(("hook success", event.ref.job, event.outputs))

    def on_failure(event: JobEnded) -> None:
        heard.append(("hook failure", event.ref.job, event.error))
        raise RuntimeError("a broken hook changes nothing")

    @worker.job("greet", on_success=on_success, on_failure=on_failure)
    async def greet(ctx: JobContext) -> dict[str, str]:
        if ctx.job == "refuse":
            raise PermanentError("no greeting today")
        return {"greeting": "hello"}

    @worker.on("job_started")
    def started(event: JobStarted) -> None:
        heard.append(("started", event.ref.job, (event.ref.attempt, event.took_over)))

    worker.on("job_failed", lambda event: heard.append(("failed", event.ref.job, event.retried)))

    await worker.start()
    try:
        await harness.queue("wf", "hello", uses="greet")
        await assert_eventually(lambda: ("hook success", "hello", {"greeting": "hello"}) in heard)
        await harness.queue("wf", "refuse", uses="greet", retry=RetryPolicy(max_attempts=3))
        await assert_eventually(lambda: any(h[0] == "failed" for h in heard))
    finally:
        await worker.stop()

    assert recorded_first == [True]
    assert sorted(heard, key=lambda h: (h[1], h[0])) == [
        ("hook success", "hello", {"greeting": "hello"}),
        ("started", "hello", (1, False)),
        ("failed", "refuse", False),  # a permanent error: no retry queued
        ("hook failure", "refuse", "PermanentError: no greeting today"),
        ("started", "refuse", (1, False)),
    ]
    failed = (await harness.events("wf", "refuse", JobFailed))[0]
    assert failed.error == "PermanentError: no greeting today"  # the hook's error changed nothing
