"""An operator's control of a run, pure: pause, resume, skip a job, retry, rerun from a job.

``decide`` turns an ``OperatorCommand`` into events of the workflow actor (and of the jobs it
touches), or raises ``CommandRefused`` saying why it makes no sense in the workflow's state. The
same function runs in the client before a request is sent (a clear refusal at once, even while no
engine runs) and in the engine, which has the last word: its state is the one appends are
conditional on. ``evolve`` folds the workflow events it decides.

A paused workflow decides nothing for its pending jobs (``actors.workflow``'s ``Advance`` stops),
so no job is queued, skipped or judged while an operator looks at it; results of jobs already
running are recorded as ever. What falls due meanwhile (a retry, the timeout) waits for the resume
(``actors.engine.reactions``).
"""

from __future__ import annotations

from datetime import datetime

from actors import fanout_state, signals, variables
from actors._state import updated
from actors.commands import (
    AnyOperatorCommand,
    HookWorkflow,
    OperatorCommand,
    PauseWorkflow,
    RerunWorkflow,
    RestartWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    SetVariables,
    SignalWorkflow,
    SkipJob,
)
from actors.workflow_state import WorkflowState
from events.base import Event
from events.catalog import (
    JobReopened,
    JobSkipped,
    JobStatus,
    WorkflowPaused,
    WorkflowRerun,
    WorkflowRestarted,
    WorkflowResumed,
    WorkflowRetried,
    WorkflowStatus,
)
from events.errors import CommandRefused, WorkflowNotFound
from events.requests import (
    ControlRequest,
    HookRequest,
    PauseRequest,
    RerunRequest,
    RestartRequest,
    ResumeRequest,
    RetryRequest,
    SetVarsRequest,
    SignalRequest,
)

__all__ = ["SKIPPABLE", "control_command", "decide", "downstream", "evolve", "operator_note"]

# A job an operator may skip: one that has not run to an end it could keep.
SKIPPABLE = frozenset(
    {JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.FAILED, JobStatus.WAITING}
)
_RETRYABLE = frozenset({WorkflowStatus.FAILED, WorkflowStatus.CANCELLED})
_WORDS = {
    PauseWorkflow: "pause",
    ResumeWorkflow: "resume",
    SkipJob: "skip",
    RetryWorkflow: "retry",
    RerunWorkflow: "rerun",
    RestartWorkflow: "restart",
    SignalWorkflow: "signal",
    HookWorkflow: "hook",
}


def decide(state: WorkflowState, command: AnyOperatorCommand) -> list[Event]:
    """The events of ``command``; [] when it is applied already (a redelivery, a second pause).

    Raises ``WorkflowNotFound`` for a workflow never started and ``CommandRefused`` when the
    command makes no sense now."""
    if state.status is None:
        raise WorkflowNotFound(command.workflow_id)
    if command.request_id is not None and command.request_id == state.last_request_id:
        return []
    match command:
        case PauseWorkflow():
            return _pause(state, command)
        case ResumeWorkflow():
            return _resume(state, command)
        case SkipJob():
            return _skip(state, command)
        case RetryWorkflow():
            return _retry(state, command)
        case RerunWorkflow():
            return _rerun(state, command)
        case RestartWorkflow():
            return _restart(state, command)
        case SignalWorkflow():
            return signals.decide_signal(state, command)
        case HookWorkflow():
            return signals.decide_hook(state, command)
        case SetVariables():
            return variables.decide(state, command)


def control_command(request: ControlRequest, now: datetime) -> AnyOperatorCommand:
    """The workflow actor's command for an operator's request."""
    common = {
        "workflow_id": request.workflow_id,
        "by": request.by,
        "reason": request.reason,
        "request_id": request.request_id,
        "now": now,
    }
    if isinstance(request, PauseRequest):
        return PauseWorkflow(**common)
    if isinstance(request, ResumeRequest):
        return ResumeWorkflow(**common)
    if isinstance(request, RetryRequest):
        return RetryWorkflow(**common)
    if isinstance(request, RerunRequest):
        return RerunWorkflow(**common, job=request.job)
    if isinstance(request, RestartRequest):
        return RestartWorkflow(**common, restarted_as=request.restarted_as)
    if isinstance(request, HookRequest):
        return HookWorkflow(**common, job=request.job, attempt=request.attempt, body=request.body)
    if isinstance(request, SignalRequest):
        return SignalWorkflow(
            **common, name=request.name, data=request.data, signal_id=request.signal_id
        )
    if isinstance(request, SetVarsRequest):
        return SetVariables(**common, values=request.values)
    return SkipJob(**common, job=request.job, outputs=request.outputs)


def _refuse(state: WorkflowState, command: OperatorCommand, reason: str) -> CommandRefused:
    return CommandRefused(state.workflow_id, _WORDS[type(command)], reason)


def _ended(state: WorkflowState) -> str:
    return f"it has ended ({state.status})"


def _pause(state: WorkflowState, cmd: PauseWorkflow) -> list[Event]:
    assert state.status is not None
    if state.status.is_terminal:
        raise _refuse(state, cmd, _ended(state))
    if state.cancel_requested:
        raise _refuse(state, cmd, "it is being cancelled")
    if state.status is WorkflowStatus.QUEUED:  # (no job runs yet; a resume would skip the line)
        raise _refuse(state, cmd, f"it waits for concurrency group {state.group}: cancel it")
    if state.paused:
        return []  # paused already: what the operator wants holds
    return [
        WorkflowPaused(
            workflow_id=state.workflow_id,
            by=cmd.by,
            reason=cmd.reason,
            request_id=cmd.request_id,
            at=cmd.now,
        )
    ]


def _resume(state: WorkflowState, cmd: ResumeWorkflow) -> list[Event]:
    assert state.status is not None
    if state.status.is_terminal:
        raise _refuse(state, cmd, _ended(state))
    if not state.paused:
        raise _refuse(state, cmd, f"it is not paused (it is {state.status})")
    return [
        WorkflowResumed(
            workflow_id=state.workflow_id,
            by=cmd.by,
            reason=cmd.reason,
            request_id=cmd.request_id,
            at=cmd.now,
        )
    ]


def _skip(state: WorkflowState, cmd: SkipJob) -> list[Event]:
    assert state.status is not None
    if cmd.job not in state.order:
        _refuse_unknown_instance(state, cmd)
    if state.status.is_terminal:
        hint = "; `jetwork retry` runs its failed jobs again" if state.status in _RETRYABLE else ""
        raise _refuse(state, cmd, _ended(state) + hint)
    current = state.job(cmd.job)
    if current.status is JobStatus.SKIPPED and current.skipped_by is not None:
        return []  # skipped by an operator already
    if current.status not in SKIPPABLE:
        raise _refuse(
            state,
            cmd,
            f"job {cmd.job!r} is {current.status}; only a pending, queued, waiting or failed job "
            "can be skipped",
        )
    return [
        JobSkipped(
            **current.ids,
            reason=operator_note("skipped", cmd.by, cmd.reason),
            at=cmd.now,
            by=cmd.by,
            outputs=dict(cmd.outputs),
        )
    ]


def _refuse_unknown_instance(state: WorkflowState, cmd: SkipJob) -> None:
    """Let ``cmd.job`` through if it names an instance ``<job>-<index>`` of a fanned-out job that
    runs now (skipping it ends that instance; its slot in the gathered outputs gets ``outputs``);
    refuse it, saying why, otherwise."""
    found = fanout_state.parent_of(state.fanouts, cmd.job)
    if found is None:
        known = ", ".join(sorted(state.order)) or "none"
        head, _, tail = cmd.job.rpartition("-")
        fan = state.fanouts.get(head)
        if fan is not None and tail.isdigit():
            raise _refuse(
                state,
                cmd,
                f"job {head!r} has {fan.count} instances ({head}-0 to {head}-{fan.count - 1}), "
                f"no {cmd.job!r}",
            )
        raise _refuse(state, cmd, f"it has no job {cmd.job!r} (its jobs: {known})")
    parent = state.job(found[0])
    if parent.status is not JobStatus.RUNNING:
        raise _refuse(
            state,
            cmd,
            f"job {found[0]!r} is {parent.status}; an instance can be skipped while its fan-out "
            "runs",
        )


def _retry(state: WorkflowState, cmd: RetryWorkflow) -> list[Event]:
    assert state.status is not None
    if state.status not in _RETRYABLE:
        succeeded = state.status is WorkflowStatus.SUCCEEDED
        what = "it succeeded" if succeeded else f"it is {state.status}"
        raise _refuse(state, cmd, f"{what}; only a failed or cancelled workflow can be retried")
    _refuse_unstopped(state, cmd)
    again = _jobs_to_run_again(state)
    if not again:
        raise _refuse(state, cmd, "no job failed or was cancelled")
    return [
        WorkflowRetried(
            workflow_id=state.workflow_id,
            by=cmd.by,
            reason=cmd.reason,
            request_id=cmd.request_id,
            jobs=again,
            at=cmd.now,
        ),
        *(JobReopened(**state.job(name).ids, by=cmd.by, at=cmd.now) for name in again),
    ]


def _refuse_unstopped(state: WorkflowState, cmd: RetryWorkflow | RerunWorkflow) -> None:
    # A job its worker still stops (a timeout ended the workflow under it) would run twice.
    unfinished = [name for name in state.order if state.job(name).status is JobStatus.RUNNING]
    if unfinished:
        word = _WORDS[type(cmd)]
        raise _refuse(
            state,
            cmd,
            f"job(s) {', '.join(unfinished)} have not stopped yet; {word} once they have",
        )


def _rerun(state: WorkflowState, cmd: RerunWorkflow) -> list[Event]:
    assert state.status is not None and state.definition is not None
    if cmd.job not in state.order:
        known = ", ".join(sorted(state.order)) or "none"
        raise _refuse(state, cmd, f"it has no job {cmd.job!r} (its jobs: {known})")
    if not state.status.is_terminal:
        raise _refuse(
            state,
            cmd,
            f"it is {state.status}; only an ended workflow can be rerun (cancel it first, or "
            "wait for its end)",
        )
    _refuse_unstopped(state, cmd)
    again = downstream(state, cmd.job)
    return [
        WorkflowRerun(
            workflow_id=state.workflow_id,
            by=cmd.by,
            reason=cmd.reason,
            request_id=cmd.request_id,
            from_job=cmd.job,
            jobs=again,
            at=cmd.now,
        ),
        *(JobReopened(**state.job(name).ids, by=cmd.by, at=cmd.now) for name in again),
    ]


def _restart(state: WorkflowState, cmd: RestartWorkflow) -> list[Event]:
    assert state.status is not None
    if not state.status.is_terminal:
        raise _refuse(
            state,
            cmd,
            f"it is {state.status}; only an ended workflow can be restarted (cancel it first, or "
            "wait for its end)",
        )
    if cmd.restarted_as == state.workflow_id:
        raise _refuse(state, cmd, "its new run needs an id of its own")
    return [
        WorkflowRestarted(
            workflow_id=state.workflow_id,
            by=cmd.by,
            reason=cmd.reason,
            request_id=cmd.request_id,
            restarted_as=cmd.restarted_as,
            at=cmd.now,
        )
    ]


def downstream(state: WorkflowState, job: str) -> tuple[str, ...]:
    """``job`` and every job that needs it, transitively (``needs`` or ``needs_any``), in
    topological order."""
    assert state.definition is not None
    jobs = state.definition.jobs
    below = {job}
    for name in state.order:
        if any(up in below for up in jobs[name].upstream):
            below.add(name)
    return tuple(name for name in state.order if name in below)


def _jobs_to_run_again(state: WorkflowState) -> tuple[str, ...]:
    """Failed and cancelled jobs, and the jobs the engine skipped below them (in topological
    order, so a skip is reopened when anything it needs is). A job skipped for a reason of its
    own (a false condition with nothing reopened above it) and every success keep their end."""
    assert state.definition is not None
    again: list[str] = []
    for name in state.order:
        current = state.job(name)
        if current.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            again.append(name)
        elif current.status is JobStatus.SKIPPED and current.skipped_by is None:
            upstream = state.definition.jobs[name].upstream
            if any(up in again for up in upstream):
                again.append(name)
    return tuple(again)


def operator_note(what: str, by: str, reason: str | None) -> str:
    """``paused by ops: deploy freeze`` (the reason shown in views)."""
    return f"{what} by {by}" + (f": {reason}" if reason else "")


def evolve(
    state: WorkflowState,
    event: WorkflowPaused | WorkflowResumed | WorkflowRetried | WorkflowRerun | WorkflowRestarted,
) -> WorkflowState:
    """The workflow state after one of the control events."""
    match event:
        case WorkflowPaused():
            return updated(
                state,
                status=WorkflowStatus.PAUSED,
                pause_note=operator_note("paused", event.by, event.reason),
                last_request_id=event.request_id,
            )
        case WorkflowResumed():
            return updated(
                state,
                status=WorkflowStatus.RUNNING,
                pause_note=None,
                last_request_id=event.request_id,
            )
        case WorkflowRetried() | WorkflowRerun():
            return _reopened(state, event.at, event.request_id)
        case WorkflowRestarted():
            return updated(state, restarted_as=event.restarted_as, last_request_id=event.request_id)


def _reopened(state: WorkflowState, at: datetime, request_id: str | None) -> WorkflowState:
    # A cancelled workflow retried or rerun is no longer being cancelled: its jobs run as if it
    # never was.
    return updated(
        state,
        status=WorkflowStatus.RUNNING,
        cancel_reason=None,
        cancel_forced=False,
        end_reason=None,
        ended_at=None,
        retries=state.retries + 1,
        retried_at=at,
        last_request_id=request_id,
    )
