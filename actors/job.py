"""The job actor: one job of one workflow, on ``evt.<wf>.job.<job>.*``.

Pure: ``decide(state, command) -> events``, ``evolve(state, event) -> state``. Its decisions
run in the engine *and* in workers (which append their own claims and results under CAS on the
job's subject), so the state holds everything needed to decide alone: the spec, the retry policy
and ``on_failure`` arrive with ``JobQueued``.

Fencing: every claim grants a new lease ``epoch`` (monotonic over the job's whole life). A result
counts only from the holder of the current epoch while the job runs; any other is recorded as
``JobResultRejected``, so a job is completed at most once in the log.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from actors import _child_runs as subworkflows
from actors import parking
from actors.commands import (
    AnyJobCommand,
    CancelJob,
    ClaimJob,
    CompleteJob,
    ConfirmCancelled,
    ExpireLease,
    FailJob,
    ParkJob,
    RequeueJob,
    TimeoutDispatch,
    TimeoutJob,
    UnparkJob,
)
from actors.definitions import format_duration
from actors.job_state import (
    CANCELLED,
    FAILED,
    SUCCEEDED,
    ActorIds,
    JobState,
    evolve,
    pending,
    replay,
)
from events.catalog import (
    Claim,
    JobCancelled,
    JobCancelRequested,
    JobEvent,
    JobFailed,
    JobQueued,
    JobResultRejected,
    JobRetryScheduled,
    JobStarted,
    JobStatus,
    JobSucceeded,
)
from events.definition import OnFailure
from events.errors import JetworkError

__all__ = [
    "ActorIds",
    "ClaimRefused",
    "JobState",
    "carry_claim",
    "decide",
    "evolve",
    "pending",
    "replay",
]

_WITHDRAWABLE = frozenset(
    {JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.WAITING, JobStatus.PARKED}
)


class ClaimRefused(JetworkError):
    """The job's log does not allow this claim.

    ``retryable=False``: drop the delivery (ack it), the job has moved on or another worker holds
    it. ``retryable=True``: the log does not show yet what the dispatch promises (a stale read):
    reload and try again later. A lost race is not a refusal: the append raises
    ``ConcurrencyConflict``.
    """

    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        super().__init__(f"claim refused: {reason}", retryable=retryable)
        self.reason = reason


# --- decide ---------------------------------------------------------------------------------


def decide(state: JobState, command: AnyJobCommand) -> list[JobEvent]:
    """The events ``command`` leads to; [] when it changes nothing (a duplicate, a stale timer).

    Raises ``ClaimRefused`` for a claim the log does not allow.
    """
    match command:
        case ClaimJob():
            return _claim(state, command)
        case CompleteJob():
            return _complete(state, command)
        case FailJob():
            return _fail(state, command)
        case TimeoutJob():
            return _timeout(state, command)
        case TimeoutDispatch():
            return _dispatch_timeout(state, command)
        case RequeueJob():
            return _requeue(state, command)
        case CancelJob():
            return _cancel(state, command)
        case ConfirmCancelled():
            return _confirm_cancelled(state, command)
        case ExpireLease():
            return _expire_lease(state, command)
        case ParkJob():
            parked = parking.park(state, command)
            if parked is None:
                return [_rejected(state, command.epoch, command.worker_id, parking.PARKED,
                                  command.now)]  # fmt: skip
            return parked
        case UnparkJob():
            return parking.unpark(state, command)


def _claim(state: JobState, cmd: ClaimJob) -> list[JobEvent]:
    if state.sleep_until is not None:
        raise ClaimRefused(f"{state.job} is a sleep: no worker runs it")
    if state.status is JobStatus.QUEUED and cmd.attempt == state.attempt:
        return [_started(state, cmd)]
    if _is_redelivery(state, cmd):
        # The holder's lease expired and JetStream handed the job to someone else.
        if state.cancel_reason is not None:
            return [_cancelled(state, state.cancel_reason, None, cmd.now)]
        return [_started(state, cmd)]
    if cmd.attempt > state.attempt or state.status is JobStatus.PENDING:
        raise ClaimRefused(
            f"attempt {cmd.attempt} of {state.job} is not queued in the log yet",
            retryable=True,
        )
    raise ClaimRefused(_why_not_claimable(state, cmd))


def carry_claim(started: JobStarted, results: list[JobEvent]) -> list[JobEvent] | None:
    """``results`` (decided on the state after the claim ``started``) with the claim carried by
    the first one (``events.catalog.Claim``): what a worker appends, in one write, for a run
    that ended within its claim window. None when the first result cannot carry it: only a
    ``JobSucceeded`` or ``JobFailed`` of the claim's own epoch and worker can."""
    first = results[0] if results else None
    if (
        not isinstance(first, JobSucceeded | JobFailed)
        or first.epoch != started.epoch
        or first.attempt != started.attempt
        or first.worker_id != started.worker_id
    ):
        return None
    claim = Claim(
        delivery=started.delivery,
        dispatch_seq=started.dispatch_seq,
        lease_ttl=started.lease_ttl,
        started_at=started.started_at,
    )
    return [first.model_copy(update={"claimed": claim}), *results[1:]]


def _is_redelivery(state: JobState, cmd: ClaimJob) -> bool:
    return (
        state.status is JobStatus.RUNNING
        and cmd.attempt == state.attempt
        and cmd.dispatch_seq == state.dispatch_seq
        and cmd.delivery > state.delivery
    )


def _why_not_claimable(state: JobState, cmd: ClaimJob) -> str:
    if state.status.is_terminal:
        return f"{state.job} is already {state.status}"
    if cmd.attempt < state.attempt or state.status is JobStatus.RETRYING:
        return f"attempt {cmd.attempt} of {state.job} is over (current attempt {state.attempt})"
    if cmd.dispatch_seq != state.dispatch_seq:
        return (
            f"attempt {cmd.attempt} of {state.job} already runs from dispatch "
            f"{state.dispatch_seq}, not {cmd.dispatch_seq}"
        )
    return (
        f"delivery {cmd.delivery} of {state.job} is not newer than the holder's "
        f"delivery {state.delivery}"
    )


def _started(state: JobState, cmd: ClaimJob) -> JobStarted:
    return JobStarted(
        **state.ids,
        attempt=cmd.attempt,
        epoch=state.epoch + 1,
        worker_id=cmd.worker_id,
        delivery=cmd.delivery,
        dispatch_seq=cmd.dispatch_seq,
        lease_ttl=cmd.lease_ttl,
        started_at=cmd.now,
    )


def _holds_lease(state: JobState, epoch: int) -> bool:
    return state.status is JobStatus.RUNNING and epoch == state.epoch


def _already_settled(state: JobState, epoch: int, outcome: str) -> bool:
    return state.settled_epoch == epoch and state.settled_outcome == outcome


def _complete(state: JobState, cmd: CompleteJob) -> list[JobEvent]:
    if _holds_lease(state, cmd.epoch):
        return [
            JobSucceeded(
                **state.ids,
                attempt=state.attempt,
                epoch=cmd.epoch,
                worker_id=cmd.worker_id,
                outputs=cmd.outputs,
                result=cmd.result,
                ended_at=cmd.now,
            )
        ]
    if _already_settled(state, cmd.epoch, SUCCEEDED):
        return []
    return [_rejected(state, cmd.epoch, cmd.worker_id, SUCCEEDED, cmd.now)]


def _fail(state: JobState, cmd: FailJob) -> list[JobEvent]:
    if _holds_lease(state, cmd.epoch):
        return _failure(state, cmd)
    if _already_settled(state, cmd.epoch, FAILED):
        return []
    return [_rejected(state, cmd.epoch, cmd.worker_id, FAILED, cmd.now)]


def _timeout(state: JobState, cmd: TimeoutJob) -> list[JobEvent]:
    if not _holds_lease(state, cmd.epoch):
        return []  # the attempt the timer was armed for has ended: a stale timer
    error = f"timed out after {format_duration(state.spec.timeout or 0)}"
    return _failure(
        state, FailJob(**state.ids, epoch=cmd.epoch, error=error, timed_out=True, now=cmd.now)
    )


def _dispatch_timeout(state: JobState, cmd: TimeoutDispatch) -> list[JobEvent]:
    if (
        state.status is not JobStatus.QUEUED
        or state.attempt != cmd.attempt
        or state.poll_count != cmd.poll_count
    ):
        return []  # claimed, cancelled or superseded in time: a stale timer
    waited = format_duration(state.dispatch_timeout or 0)
    needs = _needs(state)
    who = f"no worker offering {needs} claimed it" if needs else "no worker claimed it"
    error = f"{who} within {waited} (dispatch_timeout)"
    # Final: another attempt would wait for the same missing worker.
    return [
        JobFailed(
            **state.ids,
            attempt=state.attempt,
            epoch=state.epoch,
            error=error,
            retryable=False,
            timed_out=True,
            ended_at=cmd.now,
        )
    ]


def _needs(state: JobState) -> str:
    labels = sorted(state.spec.labels)
    parts = [f"label{'s' if len(labels) > 1 else ''} {', '.join(labels)}"] if labels else []
    if state.spec.uses:
        parts.append(f"handler {state.spec.uses}")
    return " and ".join(parts)


def _failure(state: JobState, cmd: FailJob) -> list[JobEvent]:
    will_retry = _will_retry(state, retryable=cmd.retryable)
    failed = JobFailed(
        **state.ids,
        attempt=state.attempt,
        epoch=state.epoch,
        worker_id=cmd.worker_id,
        error=cmd.error,
        retryable=cmd.retryable,
        timed_out=cmd.timed_out,
        will_retry=will_retry,
        ended_at=cmd.now,
    )
    if not will_retry:
        return [failed]
    attempt = state.attempt + 1
    delay = state.retry.delay_before(attempt - state.attempt_base)
    not_before = cmd.now + timedelta(seconds=delay)
    return [
        failed,
        JobRetryScheduled(**state.ids, attempt=attempt, delay=delay, not_before=not_before),
    ]


def _will_retry(state: JobState, *, retryable: bool) -> bool:
    # A cancel request wins over any retry: the user asked the job to stop.
    if not retryable or state.cancel_requested:
        return False
    if state.on_failure is OnFailure.RETRY_FOREVER:
        return True
    return state.attempt - state.attempt_base < state.retry.max_attempts


def _requeue(state: JobState, cmd: RequeueJob) -> list[JobEvent]:
    attempt = state.attempt + 1
    if state.status is not JobStatus.RETRYING or cmd.attempt not in (None, attempt):
        return []  # a stale or duplicate retry timer
    return [_queued_again(state, attempt, cmd.now)]


def _expire_lease(state: JobState, cmd: ExpireLease) -> list[JobEvent]:
    """Queue the attempt again for another worker: its lease ran out (the holder's later
    result is rejected, as any stale epoch's). [] when that lease has ended already."""
    if not _holds_lease(state, cmd.epoch):
        return []
    return [_queued_again(state, state.attempt, cmd.now)]


def _queued_again(state: JobState, attempt: int, now: datetime) -> JobEvent:
    """``attempt`` queued (again) as the job was defined, recording the last epoch granted so
    that the next claim, decided from this event alone, takes the epoch after it. A
    ``workflow:`` job's attempt starts a new child run instead."""
    if state.spec.workflow is not None:
        return subworkflows.started(state, attempt, now)
    return JobQueued(
        **state.ids,
        attempt=attempt,
        spec=state.spec,
        retry=state.retry,
        on_failure=state.on_failure,
        queued_at=now,
        prior_epoch=state.epoch,
        dispatch_timeout=state.dispatch_timeout,
        attempt_base=state.attempt_base,
    )


def _cancel(state: JobState, cmd: CancelJob) -> list[JobEvent]:
    if state.status in _WITHDRAWABLE:
        return [_cancelled(state, cmd.reason, None, cmd.now)]
    if state.status is JobStatus.RUNNING and not state.cancel_requested:
        return [
            JobCancelRequested(
                **state.ids,
                reason=cmd.reason,
                requested_at=cmd.now,
            )
        ]
    return []


def _confirm_cancelled(state: JobState, cmd: ConfirmCancelled) -> list[JobEvent]:
    if _holds_lease(state, cmd.epoch):
        reason = state.cancel_reason or "stopped by its worker"
        return [_cancelled(state, reason, cmd.worker_id, cmd.now)]
    if _already_settled(state, cmd.epoch, CANCELLED):
        return []
    return [_rejected(state, cmd.epoch, cmd.worker_id, CANCELLED, cmd.now)]


def _cancelled(state: JobState, reason: str, worker_id: str | None, now: datetime) -> JobCancelled:
    return JobCancelled(**state.ids, reason=reason, worker_id=worker_id, at=now)


def _rejected(
    state: JobState, epoch: int, worker_id: str | None, outcome: str, now: datetime
) -> JobResultRejected:
    if state.status is JobStatus.RUNNING:
        reason = f"epoch {epoch} no longer holds the lease (epoch {state.epoch} does)"
    elif state.status.is_terminal:
        reason = f"the job is already {state.status}"
    else:
        reason = f"the job is {state.status}, not running"
    return JobResultRejected(
        **state.ids,
        attempt=state.attempt,
        epoch=epoch,
        worker_id=worker_id,
        outcome=outcome,
        reason=reason,
        at=now,
    )
