"""Long-running jobs: a handler returns ``InProgress`` and its job is parked (pure).

Conductor's in-progress callback. The holder of the lease reports ``ParkJob``: the job actor
records ``JobParked`` (no lease, no worker while it waits) and the engine arms a durable
``CallbackTimer`` for ``not_before``. When it fires, ``UnparkJob`` queues the same attempt again
with ``poll_count`` and the progress ``outputs``, and any worker offering the job claims it as
usual (a new lease epoch). Parking does not use up attempts; the job's ``timeout`` bounds each
run, not the wait. A cancel withdraws a parked job at once; a cancel requested while the handler
ran turns its ``InProgress`` into ``JobCancelled``.
"""

from __future__ import annotations

from datetime import timedelta

from actors.commands import ParkJob, UnparkJob
from actors.job_state import JobState
from events.catalog import JobCancelled, JobEvent, JobParked, JobQueued, JobStatus

PARKED = "parked"
"""``JobState.settled_outcome`` of an epoch that ended parked (a re-report records nothing)."""


def park(state: JobState, cmd: ParkJob) -> list[JobEvent] | None:
    """The events of ``cmd``; None when the reporter does not hold the lease (a rejection)."""
    if state.status is not JobStatus.RUNNING or cmd.epoch != state.epoch:
        if state.settled_epoch == cmd.epoch and state.settled_outcome == PARKED:
            return []  # the same report again (its first append's ack was lost)
        return None
    if state.cancel_reason is not None:
        return [JobCancelled(**state.ids, reason=state.cancel_reason, worker_id=cmd.worker_id,
                             at=cmd.now)]  # fmt: skip
    return [
        JobParked(
            **state.ids,
            attempt=state.attempt,
            epoch=cmd.epoch,
            worker_id=cmd.worker_id,
            poll_count=state.poll_count + 1,
            outputs=cmd.outputs,
            callback_after=cmd.callback_after,
            not_before=cmd.now + timedelta(seconds=cmd.callback_after),
            at=cmd.now,
        )
    ]


def unpark(state: JobState, cmd: UnparkJob) -> list[JobEvent]:
    """Queue the parked attempt again; [] for a stale or repeated callback."""
    if (
        state.status is not JobStatus.PARKED
        or state.attempt != cmd.attempt
        or state.poll_count != cmd.poll_count
    ):
        return []
    return [
        JobQueued(
            **state.ids,
            attempt=state.attempt,
            spec=state.spec,
            retry=state.retry,
            on_failure=state.on_failure,
            queued_at=cmd.now,
            prior_epoch=state.epoch,
            dispatch_timeout=state.dispatch_timeout,
            poll_count=state.poll_count,
            progress=dict(state.outputs),
        )
    ]
