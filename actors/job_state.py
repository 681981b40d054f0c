"""The job actor's state and its fold: ``evolve(state, event) -> state``, ``replay(events)``.

Split from ``actors.job`` (which re-exports all of it) to keep each module small: this half
reads the log, that half decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypedDict

from actors._state import stamped, updated, updated_by
from events.base import RecordedEvent
from events.catalog import (
    JobCancelled,
    JobCancelRequested,
    JobEvent,
    JobFailed,
    JobFannedIn,
    JobFannedOut,
    JobLooped,
    JobParked,
    JobQueued,
    JobReopened,
    JobResultRejected,
    JobRetryScheduled,
    JobSkipped,
    JobSleepStarted,
    JobSpec,
    JobStarted,
    JobStatus,
    JobSucceeded,
    JobWaiting,
    SubWorkflowStarted,
)
from events.definition import OnFailure, RetryPolicy

# What a settled epoch ended with (``JobState.settled_outcome``, ``JobResultRejected.outcome``).
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
_OUTCOME_STATUS = {outcome: JobStatus(outcome) for outcome in (SUCCEEDED, FAILED, CANCELLED)}

# Shared defaults: both are frozen, and a workflow creates a pending state for every job.
_NO_SPEC = JobSpec()
_NO_RETRY = RetryPolicy()


class ActorIds(TypedDict):
    workflow_id: str
    job: str


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
    dispatch_timeout: float | None = None
    # Queued: claimable from then on. Retrying: when the next attempt may be queued.
    not_before: datetime | None = None
    worker_id: str | None = None
    delivery: int = 0
    dispatch_seq: int = 0
    lease_ttl: float = 0.0
    started_at: datetime | None = None
    cancel_reason: str | None = None
    skip_reason: str | None = None
    # Who skipped it by hand (``jetwork skip``); None when the engine skipped it, or it ran.
    skipped_by: str | None = None
    outputs: Mapping[str, str] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    ended_at: datetime | None = None
    # The epoch whose result the log recorded, and what it was: a worker re-reporting the same
    # result (its first append's ack was lost) gets no new event instead of a rejection.
    settled_epoch: int = 0
    settled_outcome: str | None = None
    rejections: int = 0
    # The wait of a ``wait_for`` job (its signal and deadline), from its last ``JobWaiting``.
    wait: JobWaiting | None = None
    # A ``workflow:`` job's running (or last) child workflow; a ``loop:`` job's iteration (from 1)
    # and the attempts before it (its attempts and retry budget count from there).
    child_id: str | None = None
    iteration: int = 1
    attempt_base: int = 0
    # A ``sleep``/``until`` job's wake-up time (``actors.inline_steps``): it waits for no worker.
    sleep_until: datetime | None = None
    # Times the current attempt was parked (a handler's InProgress; ``actors.parking``).
    poll_count: int = 0
    # Stream sequence of this actor's last event (set by ``replay`` from RecordedEvents): the
    # expected last sequence for the next CAS append. 0 means no event yet.
    last_seq: int = 0

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_reason is not None

    @property
    def succeeded(self) -> bool:
        """It succeeded, or an operator skipped it: dependents proceed with its ``outputs``."""
        return self.status is JobStatus.SUCCEEDED or (
            self.status is JobStatus.SKIPPED and self.skipped_by is not None
        )

    @property
    def ids(self) -> ActorIds:
        return {"workflow_id": self.workflow_id, "job": self.job}

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


# --- evolve ---------------------------------------------------------------------------------


def _claim_fields(event: JobSucceeded | JobFailed) -> dict[str, Any]:
    """What the ``JobStarted`` a result recorded with its claim stands for
    (``events.catalog.implied_start``) sets, field by field: no event model is built, and the
    result's own copy of the state takes them (one copy per event, not two)."""
    claim = event.claimed
    if claim is None or event.worker_id is None:
        return {}
    return {
        "attempt": event.attempt,
        "epoch": event.epoch,
        "worker_id": event.worker_id,
        "delivery": claim.delivery,
        "dispatch_seq": claim.dispatch_seq,
        "lease_ttl": claim.lease_ttl,
        "started_at": claim.started_at,
    }


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
                dispatch_timeout=event.dispatch_timeout,
                not_before=event.not_before,
                worker_id=None,
                delivery=0,
                dispatch_seq=0,
                attempt_base=event.attempt_base,
                poll_count=event.poll_count,
                # A parked attempt queued again brings its progress; any other keeps what it had.
                outputs=event.progress if event.poll_count else state.outputs,
            )
        case JobParked():
            return updated(
                state,
                status=JobStatus.PARKED,
                epoch=max(state.epoch, event.epoch),
                worker_id=None,
                not_before=event.not_before,
                outputs=event.outputs,
                poll_count=event.poll_count,
                settled_epoch=event.epoch,
                settled_outcome="parked",
            )
        case SubWorkflowStarted() | JobLooped():
            return _subworkflow_or_loop(state, event)
        case JobSkipped():
            if event.by is not None:
                return updated(
                    state,
                    status=JobStatus.SKIPPED,
                    ended_at=event.at,
                    skip_reason=event.reason,
                    skipped_by=event.by,
                    outputs=event.outputs,
                )
            return updated(
                state, status=JobStatus.SKIPPED, ended_at=event.at, skip_reason=event.reason
            )
        case JobReopened():
            return _reopened(state)
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
            changes = _claim_fields(event) or {
                # A state that did not see the claim; a set job has no JobQueued.
                "epoch": max(state.epoch, event.epoch),
                "attempt": max(state.attempt, event.attempt),
            }
            changes["outputs"], changes["error"] = event.outputs, None
            return _settle(state, event.epoch, SUCCEEDED, event.ended_at, None, changes)
        case JobFailed():
            status = JobStatus.RETRYING if event.will_retry else JobStatus.FAILED
            changes = _claim_fields(event) or {"epoch": max(state.epoch, event.epoch)}
            changes["error"] = event.error
            return _settle(state, event.epoch, FAILED, event.ended_at, status, changes)
        case JobRetryScheduled():
            return updated(state, status=JobStatus.RETRYING, not_before=event.not_before)
        case JobCancelRequested():
            return updated(state, cancel_reason=event.reason)
        case JobCancelled():
            reason = state.cancel_reason or event.reason
            return _settle(state, state.epoch, CANCELLED, event.at, None, {"cancel_reason": reason})
        case JobResultRejected():
            return updated(state, rejections=state.rejections + 1)
        case JobWaiting():
            return updated(
                state,
                status=JobStatus.WAITING,
                attempt=event.attempt,
                on_failure=event.on_failure,
                started_at=event.at,
                wait=event,
            )
        case JobFannedOut():  # its instances run (``actors.fanout``): it runs until they end
            return updated(
                state,
                status=JobStatus.RUNNING,
                attempt=event.attempt,
                started_at=event.at,
                outputs={},
                error=None,
                ended_at=None,
            )
        case JobFannedIn():
            status = JobStatus.SUCCEEDED if event.succeeded else JobStatus.FAILED
            return updated(
                state,
                status=status,
                outputs=event.outputs,
                error=event.error,
                ended_at=event.ended_at,
            )
        case JobSleepStarted():
            return updated(
                state,
                status=JobStatus.QUEUED,
                attempt=event.attempt,
                not_before=event.until,
                sleep_until=event.until,
                started_at=event.started_at,
                worker_id=None,
            )
    return state


def _subworkflow_or_loop(state: JobState, event: SubWorkflowStarted | JobLooped) -> JobState:
    if isinstance(event, JobLooped):
        # Pending again, as after an operator's retry, for its next iteration.
        return updated(
            _reopened(state),
            iteration=event.iteration,
            attempt_base=event.attempt_base,
            outputs=state.outputs,
        )
    # Running at once: the child is its "worker"; each attempt takes a new epoch, as a claim.
    return updated(
        state,
        status=JobStatus.RUNNING,
        attempt=event.attempt,
        epoch=state.epoch + 1,
        spec=event.spec,
        retry=event.retry,
        on_failure=event.on_failure,
        attempt_base=event.attempt_base,
        child_id=event.child_id,
        worker_id=None,
        not_before=None,
        started_at=event.started_at,
    )


def _reopened(state: JobState) -> JobState:
    """Pending again, as before its first event, except for what must keep counting: attempts
    (each run is a new one), lease epochs (fencing: an old holder's result stays stale) and what
    was settled (a re-report of an old result still records nothing)."""
    return updated(
        pending(state.workflow_id, state.job),
        attempt=state.attempt,
        epoch=state.epoch,
        settled_epoch=state.settled_epoch,
        settled_outcome=state.settled_outcome,
        rejections=state.rejections,
        last_seq=state.last_seq,
    )


def _settle(
    state: JobState,
    settled_epoch: int,
    outcome: str,
    at: datetime,
    status: JobStatus | None,
    changes: dict[str, Any],
) -> JobState:
    """``state`` settled with ``outcome``, with ``changes`` (a dict of the caller's own, taken
    over: a result is every job's most frequent event, and passing its ~12 changes on as keyword
    arguments twice cost more than the copy of the state, ~1.5 µs a result)."""
    changes["status"] = status or _OUTCOME_STATUS[outcome]  # (the enum's call is ~0.4 µs)
    changes["settled_epoch"] = settled_epoch
    changes["settled_outcome"] = outcome
    changes["ended_at"] = at
    return updated_by(state, changes)


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
        changed = evolve(current, event)
        seq = item.seq if isinstance(item, RecordedEvent) else 0
        current = stamped(current, changed, seq) if seq else changed
    if current is None:
        raise ValueError("replay of no events needs an initial state")
    return current
