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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from actors._state import updated
from actors.commands import (
    AnyJobCommand,
    CancelJob,
    ClaimJob,
    CompleteJob,
    ConfirmCancelled,
    FailJob,
    RequeueJob,
    TimeoutJob,
)
from actors.definitions import format_duration
from events.base import RecordedEvent
from events.catalog import (
    JobCancelled,
    JobCancelRequested,
    JobEvent,
    JobFailed,
    JobQueued,
    JobResultRejected,
    JobRetryScheduled,
    JobSkipped,
    JobSpec,
    JobStarted,
    JobStatus,
    JobSucceeded,
)
from events.definition import OnFailure, RetryPolicy
from events.errors import JetworkError

SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

# Shared defaults: both are frozen, and a workflow creates a pending state for every job.
_NO_SPEC = JobSpec()
_NO_RETRY = RetryPolicy()
_WITHDRAWABLE = frozenset({JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RETRYING})


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


@dataclass(frozen=True)
class JobState:
    workflow_id: str
    job: str
    status: JobStatus = JobStatus.PENDING
    # The attempt queued, running, or last ended (0 before the first JobQueued).
    attempt: int = 0
    # The last lease granted; the fencing token results are checked against.
    epoch: int = 0
    spec: JobSpec = _NO_SPEC
    retry: RetryPolicy = _NO_RETRY
    on_failure: OnFailure = OnFailure.FAIL_WORKFLOW
    # Queued: claimable from then on. Retrying: when the next attempt may be queued.
    not_before: datetime | None = None
    worker_id: str | None = None
    delivery: int = 0
    dispatch_seq: int = 0
    lease_ttl: float = 0.0
    started_at: datetime | None = None
    cancel_reason: str | None = None
    outputs: Mapping[str, str] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    ended_at: datetime | None = None
    # The epoch whose result the log recorded, and what it was: a worker re-reporting the same
    # result (its first append's ack was lost) gets no new event instead of a rejection.
    settled_epoch: int = 0
    settled_outcome: str | None = None
    rejections: int = 0
    # Stream sequence of this actor's last event (set by ``replay`` from RecordedEvents): the
    # expected last sequence for the next CAS append. 0 means no event yet.
    last_seq: int = 0

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_reason is not None

    def timeout_deadline(self) -> datetime | None:
        """When the running attempt times out (arm a ``TimeoutJob`` timer for it), if ever."""
        if self.status is not JobStatus.RUNNING or self.spec.timeout is None:
            return None
        assert self.started_at is not None  # RUNNING always comes with JobStarted
        return self.started_at + timedelta(seconds=self.spec.timeout)


_PENDING = JobState(workflow_id="", job="")


def pending(workflow_id: str, job: str) -> JobState:
    """The state of a job actor with no event yet (cheaper than running ``__init__``)."""
    return updated(_PENDING, workflow_id=workflow_id, job=job)


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
        case RequeueJob():
            return _requeue(state, command)
        case CancelJob():
            return _cancel(state, command)
        case ConfirmCancelled():
            return _confirm_cancelled(state, command)


def _claim(state: JobState, cmd: ClaimJob) -> list[JobEvent]:
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
        workflow_id=state.workflow_id,
        job=state.job,
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
                workflow_id=state.workflow_id,
                job=state.job,
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
        return _failure(
            state,
            worker_id=cmd.worker_id,
            error=cmd.error,
            retryable=cmd.retryable,
            timed_out=cmd.timed_out,
            now=cmd.now,
        )
    if _already_settled(state, cmd.epoch, FAILED):
        return []
    return [_rejected(state, cmd.epoch, cmd.worker_id, FAILED, cmd.now)]


def _timeout(state: JobState, cmd: TimeoutJob) -> list[JobEvent]:
    if not _holds_lease(state, cmd.epoch):
        return []  # the attempt the timer was armed for has ended: a stale timer
    return _failure(
        state,
        worker_id=None,
        error=f"timed out after {format_duration(state.spec.timeout or 0)}",
        retryable=True,
        timed_out=True,
        now=cmd.now,
    )


def _failure(
    state: JobState,
    *,
    worker_id: str | None,
    error: str,
    retryable: bool,
    timed_out: bool,
    now: datetime,
) -> list[JobEvent]:
    will_retry = _will_retry(state, retryable=retryable)
    failed = JobFailed(
        workflow_id=state.workflow_id,
        job=state.job,
        attempt=state.attempt,
        epoch=state.epoch,
        worker_id=worker_id,
        error=error,
        retryable=retryable,
        timed_out=timed_out,
        will_retry=will_retry,
        ended_at=now,
    )
    if not will_retry:
        return [failed]
    attempt = state.attempt + 1
    delay = state.retry.delay_before(attempt)
    scheduled = JobRetryScheduled(
        workflow_id=state.workflow_id,
        job=state.job,
        attempt=attempt,
        delay=delay,
        not_before=now + timedelta(seconds=delay),
    )
    return [failed, scheduled]


def _will_retry(state: JobState, *, retryable: bool) -> bool:
    # A cancel request wins over any retry: the user asked the job to stop.
    if not retryable or state.cancel_requested:
        return False
    if state.on_failure is OnFailure.RETRY_FOREVER:
        return True
    return state.attempt < state.retry.max_attempts


def _requeue(state: JobState, cmd: RequeueJob) -> list[JobEvent]:
    attempt = state.attempt + 1
    if state.status is not JobStatus.RETRYING or cmd.attempt not in (None, attempt):
        return []  # a stale or duplicate retry timer
    return [
        JobQueued(
            workflow_id=state.workflow_id,
            job=state.job,
            attempt=attempt,
            spec=state.spec,
            retry=state.retry,
            on_failure=state.on_failure,
            queued_at=cmd.now,
        )
    ]


def _cancel(state: JobState, cmd: CancelJob) -> list[JobEvent]:
    if state.status in _WITHDRAWABLE:
        return [_cancelled(state, cmd.reason, None, cmd.now)]
    if state.status is JobStatus.RUNNING and not state.cancel_requested:
        return [
            JobCancelRequested(
                workflow_id=state.workflow_id,
                job=state.job,
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
    return JobCancelled(
        workflow_id=state.workflow_id, job=state.job, reason=reason, worker_id=worker_id, at=now
    )


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
        workflow_id=state.workflow_id,
        job=state.job,
        attempt=state.attempt,
        epoch=epoch,
        worker_id=worker_id,
        outcome=outcome,
        reason=reason,
        at=now,
    )


# --- evolve ---------------------------------------------------------------------------------


def evolve(state: JobState, event: JobEvent) -> JobState:
    """The state after ``event``. Trusts the log: it never refuses a recorded fact."""
    match event:
        case JobQueued():
            return updated(
                state,
                status=JobStatus.QUEUED,
                attempt=event.attempt,
                spec=event.spec,
                retry=event.retry,
                on_failure=event.on_failure,
                not_before=event.not_before,
                worker_id=None,
                delivery=0,
                dispatch_seq=0,
            )
        case JobSkipped():
            return updated(state, status=JobStatus.SKIPPED, ended_at=event.at)
        case JobStarted():
            return updated(
                state,
                status=JobStatus.RUNNING,
                attempt=event.attempt,
                epoch=event.epoch,
                worker_id=event.worker_id,
                delivery=event.delivery,
                dispatch_seq=event.dispatch_seq,
                lease_ttl=event.lease_ttl,
                started_at=event.started_at,
            )
        case JobSucceeded():
            return _settle(
                state, event.epoch, SUCCEEDED, event.ended_at, outputs=event.outputs, error=None
            )
        case JobFailed():
            status = JobStatus.RETRYING if event.will_retry else JobStatus.FAILED
            return _settle(state, event.epoch, FAILED, event.ended_at, status, error=event.error)
        case JobRetryScheduled():
            return updated(state, status=JobStatus.RETRYING, not_before=event.not_before)
        case JobCancelRequested():
            return updated(state, cancel_reason=event.reason)
        case JobCancelled():
            reason = state.cancel_reason or event.reason
            return _settle(state, state.epoch, CANCELLED, event.at, cancel_reason=reason)
        case JobResultRejected():
            return updated(state, rejections=state.rejections + 1)
    return state


def _settle(
    state: JobState,
    epoch: int,
    outcome: str,
    at: datetime,
    status: JobStatus | None = None,
    **changes: Any,
) -> JobState:
    return updated(
        state,
        status=status or JobStatus(outcome),
        settled_epoch=epoch,
        settled_outcome=outcome,
        ended_at=at,
        **changes,
    )


def replay(events: Iterable[JobEvent | RecordedEvent], state: JobState | None = None) -> JobState:
    """Fold ``events`` (optionally recorded, which also tracks ``last_seq``) onto ``state``.

    Without ``state`` the actor is named after the first event; replaying nothing then fails.
    """
    current = state
    for item in events:
        event = item.event if isinstance(item, RecordedEvent) else item
        if not isinstance(event, JobEvent):
            raise TypeError(f"not a job event: {event.event_type}")
        if current is None:
            current = pending(event.workflow_id, event.job)
        current = evolve(current, event)
        if isinstance(item, RecordedEvent):
            current = updated(current, last_seq=item.seq)
    if current is None:
        raise ValueError("replay of no events needs an initial state")
    return current
