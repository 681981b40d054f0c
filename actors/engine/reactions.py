"""What the engine does in response to events: the side effects and whether to advance.

Pure planning (``plan``) is separated from carrying it out (``Engine``): given the events of one
workflow just delivered and the workflow's current state, say which dispatches to publish, which
timers to arm, which cancel notices to push, and whether the workflow actor must ``Advance``.
Side effects are planned against the *current* state, so a redelivered event whose moment has
passed (the job was claimed already, the retry ran already) causes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from actors import job_state
from actors._state import updated
from actors.engine.timers import (
    DispatchTimeoutTimer,
    JobTimeoutTimer,
    RetryTimer,
    Timer,
    WorkflowTimeoutTimer,
)
from actors.workflow import WorkflowState
from events.base import Event
from events.catalog import (
    JobCancelled,
    JobCancelRequested,
    JobFailed,
    JobQueued,
    JobRetryScheduled,
    JobSkipped,
    JobStarted,
    JobStatus,
    JobSucceeded,
    WorkflowCancelRequested,
    WorkflowFailed,
    WorkflowStarted,
)

# Events after which the DAG may move on.
_ADVANCING = (
    WorkflowStarted,
    WorkflowCancelRequested,
    WorkflowFailed,
    JobSucceeded,
    JobFailed,
    JobSkipped,
    JobCancelled,
)
# Subjects the engine's event consumer listens to: everything it reacts to, nothing else.
REACTED_TO = (
    "evt.*.wf.WorkflowStarted",
    "evt.*.wf.WorkflowCancelRequested",
    "evt.*.wf.WorkflowFailed",
    "evt.*.job.*.JobQueued",
    "evt.*.job.*.JobStarted",
    "evt.*.job.*.JobSucceeded",
    "evt.*.job.*.JobFailed",
    "evt.*.job.*.JobSkipped",
    "evt.*.job.*.JobCancelled",
    "evt.*.job.*.JobRetryScheduled",
    "evt.*.job.*.JobCancelRequested",
)


# Events that can lead to a reaction of their own (see ``plan``); the others need no state read.
_REACTIVE = (
    *_ADVANCING,
    JobQueued,
    JobStarted,
    JobRetryScheduled,
    JobCancelRequested,
)


def needs_reaction(events: list[Event]) -> bool:
    return any(isinstance(event, _REACTIVE) for event in events)


def nothing_to_do(cached: WorkflowState | None, events: list[Event]) -> bool:
    """True when the events surely need no reaction, judged on a cached state without I/O.

    ``JobStarted`` only matters for a job with a timeout (its backstop timer); a job's spec never
    changes, so a cached state that already knows the spec is enough to tell.
    """
    if cached is None:
        return False
    for event in events:
        if not isinstance(event, JobStarted):
            return False
        known = cached.jobs.get(event.job)
        if known is None or known.attempt == 0 or known.spec.timeout is not None:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Dispatch:
    job: str
    attempt: int
    labels: tuple[str, ...]
    uses: str | None
    not_before: object  # datetime | None; kept loose to stay a plain record
    # The claim hint (``events.dispatch.DispatchMessage``): the job actor's only event and its
    # sequence, so the worker decides its claim without reading the log. None when unsure.
    queued: JobQueued | None = None
    queued_seq: int | None = None


@dataclass
class Plan:
    advance: bool = False
    dispatches: list[Dispatch] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    requeue_now: list[tuple[str, int]] = field(default_factory=list)  # (job, attempt)
    cancel_notices: list[str] = field(default_factory=list)  # job names


def plan(state: WorkflowState, events: list[Event]) -> Plan:
    result = Plan()
    for event in events:
        if isinstance(event, _ADVANCING):
            result.advance = True
        if isinstance(event, WorkflowStarted):
            _plan_workflow_timeout(state, result)
        elif isinstance(event, JobQueued):
            _plan_dispatch(state, event, result)
        elif isinstance(event, JobStarted):
            _plan_job_timeout(state, event, result)
        elif isinstance(event, JobRetryScheduled):
            _plan_retry(state, event, result)
        elif (
            isinstance(event, JobCancelRequested)
            and state.job(event.job).status is JobStatus.RUNNING
        ):
            result.cancel_notices.append(event.job)
    return result


def _plan_workflow_timeout(state: WorkflowState, result: Plan) -> None:
    deadline = state.timeout_deadline()
    if deadline is not None and state.status is not None and not state.status.is_terminal:
        result.timers.append(WorkflowTimeoutTimer(workflow_id=state.workflow_id, due=deadline))


def _plan_dispatch(state: WorkflowState, event: JobQueued, result: Plan) -> None:
    current = state.job(event.job)
    if current.status is not JobStatus.QUEUED or current.attempt != event.attempt:
        return  # claimed, cancelled or superseded since: nothing to dispatch
    hinted = _queued_alone(state, event)
    result.dispatches.append(
        Dispatch(
            job=event.job,
            attempt=event.attempt,
            labels=event.spec.labels,
            uses=event.spec.uses,
            not_before=event.not_before,
            queued=event if hinted else None,
            queued_seq=current.last_seq if hinted else None,
        )
    )
    if current.dispatch_timeout is not None:
        due = event.claimable_from() + timedelta(seconds=current.dispatch_timeout)
        result.timers.append(
            DispatchTimeoutTimer(
                workflow_id=state.workflow_id, job=event.job, attempt=event.attempt, due=due
            )
        )


def _queued_alone(state: WorkflowState, event: JobQueued) -> bool:
    """True when the job actor's state is ``event`` folded onto nothing, at a known sequence.

    Then a worker given ``event`` and that sequence rebuilds the very state the log holds, and
    its claim's CAS (expecting that sequence) proves nothing was appended since. Only attempt 1
    qualifies: a retry's state depends on the attempts before it.
    """
    current = state.job(event.job)
    if event.attempt != 1 or current.last_seq == 0:
        return False
    alone = job_state.evolve(job_state.pending(state.workflow_id, event.job), event)
    return updated(current, last_seq=0) == alone


def _plan_job_timeout(state: WorkflowState, event: JobStarted, result: Plan) -> None:
    current = state.job(event.job)
    if current.status is not JobStatus.RUNNING or current.epoch != event.epoch:
        return
    if current.spec.timeout is None:
        return
    # A grace beyond the worker's own timeout: the worker enforces it and reports first; the
    # timer is the backstop for a worker that died holding the lease.
    due = event.started_at + timedelta(seconds=current.spec.timeout + 5)
    result.timers.append(
        JobTimeoutTimer(workflow_id=state.workflow_id, job=event.job, epoch=event.epoch, due=due)
    )


def _plan_retry(state: WorkflowState, event: JobRetryScheduled, result: Plan) -> None:
    current = state.job(event.job)
    if current.status is not JobStatus.RETRYING or current.attempt + 1 != event.attempt:
        return
    if event.delay <= 0:
        result.requeue_now.append((event.job, event.attempt))
    else:
        result.timers.append(
            RetryTimer(
                workflow_id=state.workflow_id,
                job=event.job,
                attempt=event.attempt,
                due=event.not_before,
            )
        )
