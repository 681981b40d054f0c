"""How a worker turns an execution result into a job command, and when it may ack (pure)."""

from __future__ import annotations

from datetime import datetime

from actors.commands import CompleteJob, ConfirmCancelled, FailJob, ParkJob
from actors.job import JobState
from events.catalog import JobStatus
from sdk.worker.executors import Cancelled, ExecutionResult, Failed, Parked, Succeeded


def result_command(
    result: ExecutionResult,
    *,
    workflow_id: str,
    job: str,
    epoch: int,
    worker_id: str,
    now: datetime,
) -> CompleteJob | FailJob | ConfirmCancelled | ParkJob:
    """The job actor command reporting ``result`` for lease ``epoch``."""
    ids = {"workflow_id": workflow_id, "job": job, "epoch": epoch, "worker_id": worker_id}
    if isinstance(result, Succeeded):
        return CompleteJob(**ids, now=now, outputs=result.outputs, result=result.result)
    if isinstance(result, Cancelled):
        return ConfirmCancelled(**ids, now=now)
    if isinstance(result, Parked):
        return ParkJob(**ids, now=now, callback_after=result.after, outputs=result.outputs)
    if isinstance(result, Failed):
        return FailJob(
            **ids,
            now=now,
            error=result.error,
            retryable=result.retryable,
            timed_out=result.timed_out,
        )
    raise ValueError(f"{result.kind} results are never reported")


def held_by_another(state: JobState, dispatch_seq: int, epoch: int | None = None) -> bool:
    """True when another claim of this very dispatch message is running.

    Its holder will ack the message; an ack from us would remove it from the work queue under
    the holder's feet, and nothing would re-deliver it if that holder died.
    """
    return (
        state.status is JobStatus.RUNNING
        and state.dispatch_seq == dispatch_seq
        and state.epoch != epoch
    )
