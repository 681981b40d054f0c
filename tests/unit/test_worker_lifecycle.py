"""Worker lifecycle listeners (``sdk/worker/lifecycle.py``): who hears what, and what a failing
listener cannot do."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from events.catalog import JobFailed, JobResultRejected, JobRetryScheduled
from sdk.worker.executors.base import Abandoned, Cancelled, Failed, Succeeded
from sdk.worker.lifecycle import AttemptRef, JobEnded, Listeners, ended, for_handler

REF = AttemptRef("wf", "build", attempt=1, epoch=1, handler="build", worker_id="w")
AT = datetime(2026, 1, 1, tzinfo=UTC)


def test_an_unknown_kind_is_refused_with_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown worker event 'job_done': use one of job_started"
    ):
        Listeners().on("job_done", print)


def test_a_listener_must_be_callable() -> None:
    with pytest.raises(TypeError, match="must be callable"):
        Listeners().on("job_started", "print")  # type: ignore[arg-type]


async def test_a_failing_listener_does_not_stop_the_others() -> None:
    heard: list[str] = []
    listeners = Listeners()

    def broken(_: object) -> None:
        raise RuntimeError("a bug in user code")

    async def later(event: JobEnded) -> None:
        await asyncio.sleep(0)
        heard.append(f"async {event.outcome}")

    listeners.on("job_succeeded", broken)
    listeners.on("job_succeeded", lambda event: heard.append(f"sync {event.outcome}"))
    listeners.on("job_succeeded", later)
    listeners.emit("job_succeeded", JobEnded(REF, "succeeded", duration=0.1))
    assert heard == ["sync succeeded"]  # the coroutine runs as a task
    await listeners.settle()
    assert heard == ["sync succeeded", "async succeeded"]


def test_a_handler_hook_hears_its_handler_only() -> None:
    heard: list[str] = []
    hook = for_handler("build", lambda event: heard.append(event.ref.job))
    hook(JobEnded(REF, "succeeded", duration=0.1))
    hook(JobEnded(AttemptRef("wf", "other", 1, 1, "deploy", "w"), "succeeded", duration=0.1))
    assert heard == ["build"]


def _failed(*, will_retry: bool) -> JobFailed:
    return JobFailed(workflow_id="wf", job="build", attempt=1, epoch=1, error="boom",
                     retryable=will_retry, will_retry=will_retry, ended_at=AT)  # fmt: skip


def test_what_a_recorded_result_becomes() -> None:
    ok = ended(REF, Succeeded(outputs={"v": "1"}), [], seconds=0.5)
    assert (ok.outcome, ok.outputs, ok.duration) == ("succeeded", {"v": "1"}, 0.5)

    retry = JobRetryScheduled(workflow_id="wf", job="build", attempt=2, delay=1.0, not_before=AT)
    failed = ended(REF, Failed("boom"), [_failed(will_retry=True), retry], seconds=0.2)
    assert (failed.outcome, failed.error, failed.retried) == ("failed", "boom", True)
    final = ended(REF, Failed("boom"), [_failed(will_retry=False)], seconds=0.2)
    assert final.retried is False

    rejected = JobResultRejected(workflow_id="wf", job="build", attempt=1, epoch=1,
                                 outcome="succeeded", reason="stale", at=AT)  # fmt: skip
    assert ended(REF, Succeeded(), [rejected], seconds=0.1).outcome == "rejected"
    assert ended(REF, Cancelled("stop"), [], seconds=0.1).error == "stop"
    assert ended(REF, Abandoned(), [], seconds=0.1).duration is None
