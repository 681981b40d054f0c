"""The workflow actor: its own events on ``evt.<wf>.wf.*``, its state a fold of ``evt.<wf>.>``.

The state folds the workflow's *whole* history, job events included (through the job actor's
``evolve``), so ``Advance`` sees every job's status and outputs and can say what must follow:
jobs to queue, skip or cancel, and the workflow's end. Its result may hold events of several
actors; ``actors.appends.plan_appends`` groups them into one CAS append per actor.

``Advance`` reaches a fixpoint in one call: it judges pending jobs in topological order against
the outcomes it has just decided, so a skip propagates down a whole chain at once, and running it
again after its events are recorded yields nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime, timedelta

from actors import (
    control,
    dag,
    fanout,
    fanout_state,
    groups,
    inline_steps,
    job,
    loops,
    signals,
    subworkflows,
    variables,
)
from actors._state import stamped, updated
from actors.appends import Append, plan_appends
from actors.commands import (
    AdmitWorkflow,
    Advance,
    AnyWorkflowCommand,
    CancelJob,
    CancelWorkflow,
    HookWorkflow,
    PauseWorkflow,
    RerunWorkflow,
    RestartWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    SetVariables,
    SignalWorkflow,
    SkipJob,
    StartWorkflow,
    TimeoutWorkflow,
)
from actors.definitions import format_duration, validate_inputs
from actors.job import JobState
from actors.workflow_state import WorkflowState, blank
from events import namespaces, subjects
from events.base import Event, RecordedEvent
from events.catalog import (
    JobEvent,
    JobFailed,
    JobFannedOut,
    JobQueued,
    JobSkipped,
    JobStatus,
    SignalConsumed,
    SignalReceived,
    WorkflowAdmitted,
    WorkflowCancelled,
    WorkflowCancelRequested,
    WorkflowDeleted,
    WorkflowEvent,
    WorkflowFailed,
    WorkflowPaused,
    WorkflowQueued,
    WorkflowRerun,
    WorkflowRestarted,
    WorkflowResumed,
    WorkflowRetried,
    WorkflowStarted,
    WorkflowStatus,
    WorkflowSucceeded,
    WorkflowVariablesSet,
)
from events.definition import JobDefinition, OnFailure, WorkflowDefinition
from events.errors import WorkflowNotFound

__all__ = [
    "Append",
    "WorkflowState",
    "decide",
    "evolve",
    "plan_appends",
    "replay",
    "stop_reason",
]

# An in-process timer runs on the loop's clock, which may be a hair ahead of the wall clock.
_TIMER_TOLERANCE = timedelta(seconds=1)
# A run waiting for its concurrency group's slot times out too: the timeout counts from the start.
_TIMED = frozenset({WorkflowStatus.RUNNING, WorkflowStatus.QUEUED})
_ACTIVE = frozenset(
    {JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.RUNNING, JobStatus.WAITING, JobStatus.PARKED}
)


# --- decide ---------------------------------------------------------------------------------


def decide(state: WorkflowState, command: AnyWorkflowCommand) -> list[Event]:
    """Events that follow from ``command``: the workflow's own and, for Advance and timeouts,
    those of its jobs. [] when nothing changes. Raises ``InvalidWorkflow`` for a bad start and
    ``WorkflowNotFound`` when cancelling a workflow that never started."""
    match command:
        case StartWorkflow():
            return _start(state, command)
        case CancelWorkflow():
            return _cancel(state, command)
        case Advance():
            return _advance(state, command.now)
        case TimeoutWorkflow():
            return _timeout(state, command.now)
        case AdmitWorkflow():
            return groups.admit(state, command)
        case (
            PauseWorkflow()
            | ResumeWorkflow()
            | SkipJob()
            | RetryWorkflow()
            | RerunWorkflow()
            | RestartWorkflow()
            | SignalWorkflow()
            | HookWorkflow()
            | SetVariables()
        ):
            return control.decide(state, command)


def _start(state: WorkflowState, cmd: StartWorkflow) -> list[Event]:
    if state.status is not None:
        return []  # idempotent: the same workflow id was started already
    subjects.require_token(cmd.workflow_id, what="workflow id")
    dag.topological_order(cmd.definition)
    return [
        WorkflowStarted(
            workflow_id=cmd.workflow_id,
            definition=cmd.definition,
            inputs=validate_inputs(cmd.definition, cmd.inputs),
            idempotency_key=cmd.idempotency_key,
            started_at=cmd.now,
            restarted_from=cmd.restarted_from,
            traceparent=cmd.traceparent,
            parent=cmd.parent,
            namespace=namespaces.stored(cmd.namespace),
        )
    ]


def _cancel(state: WorkflowState, cmd: CancelWorkflow) -> list[Event]:
    if state.status is None:
        raise WorkflowNotFound(cmd.workflow_id)
    if state.status.is_terminal or state.cancel_forced:
        return []
    if state.cancel_requested and not cmd.force:
        return []
    return [
        WorkflowCancelRequested(
            workflow_id=state.workflow_id, reason=cmd.reason, force=cmd.force, requested_at=cmd.now
        )
    ]


def _advance(state: WorkflowState, now: datetime) -> list[Event]:
    if state.status is None or state.definition is None:
        return []
    if state.status.is_terminal:
        return _stop_leftovers(state, stop_reason(state.end_reason), now)
    held = groups.gate(state, now)  # a run of a concurrency group waits for its slot first
    if held is not None:
        return held
    if state.paused and not state.cancel_requested:
        return []  # an operator holds it: nothing moves until the resume (a cancel still does)
    # A working copy (a C-level dict copy: cheaper than any overlay): later jobs are judged on
    # the decisions taken for earlier ones. Made once something is decided: it costs as much as
    # the workflow has jobs, fan-out instances included, and most calls decide nothing.
    jobs: Mapping[str, JobState] = state.jobs
    copy: dict[str, JobState] | None = None
    cancelling = state.cancel_requested
    fanning = state.fanouts
    decided: list[Event] = []
    if state.definition.loop_jobs:  # (loops.advance folds what it decides into the copy)
        jobs = copy = dict(state.jobs)
        decided += loops.advance(state, state.definition, copy, now)
    for name in _to_look_at(state, cancelling, fanning):
        current = jobs[name]
        # Only pending jobs, active ones while cancelling, and running fan-outs can have
        # anything to do: the check stays inline because this loop runs after every event.
        if (
            current.status is not JobStatus.PENDING
            and not (cancelling and not current.status.is_terminal)
            and not (fanning and current.status is JobStatus.RUNNING and name in fanning)
        ):
            continue
        events = _next_for_job(state, state.definition, jobs, current, now)
        if events and copy is None:
            jobs = copy = dict(state.jobs)
        for event in events:  # (a fan-out decides its instances' events too)
            assert copy is not None
            copy[event.job] = job.evolve(copy.get(event.job) or state.job(event.job), event)
        decided += events
    # From the end of the order: its last jobs (a fan-in, a chain's tail) end last, so a
    # workflow still running is seen at once, not after all the jobs that ended.
    if all(jobs[name].status.is_terminal for name in reversed(state.order)):
        decided.append(_ending(state, state.definition, jobs, now))
    return _stamped(decided, state.traceparent, state.namespace)


def _to_look_at(
    state: WorkflowState, cancelling: bool, fanning: Mapping[str, fanout_state.FanOutState]
) -> Sequence[str]:
    """The jobs that may have something to do, in ``order``: the pending ones and the running
    fan-outs (``state.waiting``); every job while cancelling, when it is not known, or when the
    workflow has loops (an iteration makes its body's jobs pending again in the working copy)."""
    if (
        state.waiting is None
        or cancelling
        or state.definition is None
        or state.definition.loop_jobs
    ):
        return state.order
    if not fanning:
        if len(state.waiting) == len(state.order):
            return state.order  # (all pending: a new workflow)
        candidates: AbstractSet[str] = state.waiting
    else:
        candidates = state.waiting | fanning.keys()
    rank = state.rank
    return sorted((name for name in candidates if name in rank), key=rank.__getitem__)


def _stamped(decided: list[Event], traceparent: str | None, namespace: str | None) -> list[Event]:
    """Queued jobs carry the caller's trace context to their workers, and the run's namespace
    to its label set (retries keep the spec). The default namespace and no trace cost nothing."""
    if traceparent is None and namespace is None:
        return decided
    update = {"traceparent": traceparent, "namespace": namespace}
    return [
        event.model_copy(update={"spec": event.spec.model_copy(update=update)})
        if isinstance(event, JobQueued)
        else event
        for event in decided
    ]


def _next_for_job(
    state: WorkflowState,
    definition: WorkflowDefinition,
    jobs: Mapping[str, JobState],
    current: JobState,
    now: datetime,
) -> list[JobEvent]:
    spec = definition.jobs[current.job]
    if spec.fan_out is not None and current.status is JobStatus.RUNNING:
        return fanout.advance(state, definition, spec, current, jobs, now)
    if state.cancel_forced and not current.status.is_terminal:
        return job.decide(current, _cancel_job(current, state.cancel_reason, now))
    if current.status is JobStatus.PENDING:
        verdict = dag.judge(
            spec,
            jobs,
            definition=definition,
            inputs=state.inputs,
            cancelled=state.cancel_requested,
            vars=state.vars,
        )
        return _carry_out(current, spec, verdict, jobs, state.cancel_reason, now, definition)
    if current.status in _ACTIVE and state.cancel_requested:
        # A job whose condition still holds under cancellation (always(), cancelled(), ...)
        # keeps running, as in CI; every other active job is withdrawn or asked to stop.
        verdict = dag.judge(
            spec, jobs, definition=definition, inputs=state.inputs, cancelled=True, vars=state.vars
        )
        if verdict.verdict is not dag.Verdict.RUN:
            return job.decide(current, _cancel_job(current, state.cancel_reason, now))
    return []


def _carry_out(
    current: JobState,
    spec: JobDefinition,
    verdict: dag.Judgement,
    jobs: Mapping[str, JobState],
    cancel_reason: str | None,
    now: datetime,
    definition: WorkflowDefinition,
) -> list[JobEvent]:
    ids = current.ids
    match verdict.verdict:
        case dag.Verdict.WAIT:
            return []
        case dag.Verdict.SKIP:
            return [JobSkipped(**ids, reason=verdict.reason, at=now)]
        case dag.Verdict.CANCEL:
            return job.decide(current, _cancel_job(current, cancel_reason or verdict.reason, now))
        case dag.Verdict.ERROR:
            return [_failed_before_queued(current, verdict.reason, now)]
    assert verdict.context is not None  # RUN always carries the context it was judged in
    if spec.fan_out is not None:  # (its instances wait, or run their sub-workflows)
        return fanout.start(current, spec, verdict.context, jobs, now)
    if spec.wait_for is not None:
        try:
            return [signals.waiting(current, spec, verdict.context, now)]
        except ValueError as error:
            return [_failed_before_queued(current, f"cannot render the job: {error}", now)]
    inline = inline_steps.carry_out(current, spec, verdict.context, now)
    if inline is not None:
        return inline
    try:
        rendered = dag.render_spec(
            spec,
            loops.context_for(spec, current, verdict.context),
            jobs,
            workflow_priority=definition.priority,
        )
    except ValueError as error:
        return [_failed_before_queued(current, f"cannot render the job: {error}", now)]
    if spec.workflow is not None:
        return subworkflows.start(current, spec, rendered, definition, now)
    return [
        JobQueued(
            **ids,
            # 1 for a first run; after an operator's retry, the next attempt, whose claim takes
            # the epoch after the last one granted.
            attempt=current.attempt + 1,
            prior_epoch=current.epoch,
            spec=rendered,
            retry=spec.retry,
            on_failure=spec.on_failure,
            queued_at=now,
            not_before=dag.not_before(spec, now),
            dispatch_timeout=spec.dispatch_timeout or definition.dispatch_timeout,
            attempt_base=current.attempt_base,
        )
    ]


def _cancel_job(current: JobState, reason: str | None, now: datetime) -> CancelJob:
    return CancelJob(**current.ids, reason=reason or "cancelled", now=now)


def _failed_before_queued(current: JobState, error: str, now: datetime) -> JobFailed:
    # A user-written condition or template that cannot be evaluated fails the job (attempt 0:
    # it never ran) instead of stopping the engine or hanging the workflow.
    return JobFailed(**current.ids, attempt=0, epoch=0, error=error, retryable=False, ended_at=now)


def _failed_jobs(definition: WorkflowDefinition, jobs: Mapping[str, JobState]) -> tuple[str, ...]:
    return tuple(
        name
        for name, spec in definition.jobs.items()
        if spec.on_failure is not OnFailure.CONTINUE
        and name in jobs
        and jobs[name].status is JobStatus.FAILED
    )


def _stopped_job(definition: WorkflowDefinition, jobs: Mapping[str, JobState]) -> str | None:
    """Why a job was cancelled although the workflow was not (only a newer member of its
    concurrency group with ``cancel_in_progress`` asks that: ``sdk/worker/concurrency.py``)."""
    for name, spec in definition.jobs.items():
        current = jobs.get(name)
        if (
            current is not None
            and current.status is JobStatus.CANCELLED
            and spec.on_failure is not OnFailure.CONTINUE
        ):
            return f"job {name} was cancelled: {current.cancel_reason or 'cancelled'}"
    return None


def _ending(
    state: WorkflowState,
    definition: WorkflowDefinition,
    jobs: Mapping[str, JobState],
    now: datetime,
) -> WorkflowEvent:
    wf = state.workflow_id
    if state.cancel_reason is not None:
        return WorkflowCancelled(workflow_id=wf, reason=state.cancel_reason, ended_at=now)
    failed = _failed_jobs(definition, jobs)
    if failed:
        reason = f"{len(failed)} job(s) failed: {', '.join(failed)}"
        return WorkflowFailed(workflow_id=wf, reason=reason, failed_jobs=failed, ended_at=now)
    stopped = _stopped_job(definition, jobs)
    if stopped is not None:  # (a job group's cancel_in_progress newcomer superseded it)
        return WorkflowCancelled(workflow_id=wf, reason=stopped, ended_at=now)
    try:
        outputs = subworkflows.render_outputs(definition, jobs, state.inputs)
    except ValueError as error:
        reason = f"cannot render the workflow's outputs: {error}"
        return WorkflowFailed(workflow_id=wf, reason=reason, ended_at=now)
    return WorkflowSucceeded(workflow_id=wf, ended_at=now, outputs=outputs)


def _timeout(state: WorkflowState, now: datetime) -> list[Event]:
    definition = state.definition
    if state.status not in _TIMED or definition is None:
        return []  # ended, or paused: a resume past the deadline times it out then
    deadline = state.timeout_deadline()
    if definition.timeout is None or deadline is None or now < deadline - _TIMER_TOLERANCE:
        return []  # nothing to time out, or the timer of a run before a retry
    why = f"timed out after {format_duration(definition.timeout)}"
    # The end is recorded first: once it is in the log, no racing Advance can queue more work
    # or end the workflow differently, and Advance cleans up jobs this append left behind.
    failed = WorkflowFailed(
        workflow_id=state.workflow_id,
        reason=why,
        failed_jobs=_failed_jobs(definition, state.jobs),
        timed_out=True,
        ended_at=now,
    )
    return [failed, *_stop_leftovers(state, stop_reason(why), now)]


def stop_reason(end_reason: str | None) -> str:
    """Why a job still unfinished when its workflow ended is stopped (``the workflow timed out
    after 5m``): the reason of its ``JobCancelled``, and what views say until that is stored."""
    return f"the workflow {end_reason}" if end_reason else "the workflow ended"


def _stop_leftovers(state: WorkflowState, reason: str, now: datetime) -> list[Event]:
    """Withdraw or stop every job not yet terminal: a hard stop, no condition keeps one."""
    stopped: list[Event] = []
    for name in state.order:
        current = state.job(name)
        if current.status is JobStatus.RUNNING and name in state.fanouts:
            stopped += fanout.stop(state, name, reason, now)
        elif not current.status.is_terminal:
            stopped += job.decide(current, _cancel_job(current, reason, now))
    return stopped


# --- evolve ---------------------------------------------------------------------------------


def evolve(state: WorkflowState, event: Event) -> WorkflowState:
    """The state after ``event`` (a workflow event or a job event of this workflow)."""
    if isinstance(event, JobEvent):
        return replay([event], state)  # (which also tallies fan-out instances)
    match event:
        case WorkflowStarted():
            order = dag.topological_order(event.definition)
            jobs = {name: state.job(name) for name in order} | dict(state.jobs)
            return updated(
                state,
                status=WorkflowStatus.RUNNING,
                definition=event.definition,
                inputs=event.inputs,
                idempotency_key=event.idempotency_key,
                started_at=event.started_at,
                restarted_from=event.restarted_from,
                traceparent=event.traceparent,
                namespace=event.namespace,
                vars=dict(event.definition.vars),
                parent=event.parent,
                order=order,
                rank={name: place for place, name in enumerate(order)},
                jobs=jobs,
                waiting=frozenset(n for n in order if jobs[n].status is JobStatus.PENDING),
            )
        case WorkflowCancelRequested():
            # A forced request after a plain one keeps the first reason: it explains the end.
            reason = state.cancel_reason or event.reason
            return updated(state, cancel_reason=reason, cancel_forced=event.force)
        case WorkflowSucceeded():
            ended = _ended(state, WorkflowStatus.SUCCEEDED, None, event.ended_at)
            return updated(ended, outputs=event.outputs) if event.outputs else ended
        case WorkflowFailed():
            return _ended(state, WorkflowStatus.FAILED, event.reason, event.ended_at)
        case WorkflowCancelled():
            return _ended(state, WorkflowStatus.CANCELLED, event.reason, event.ended_at)
        case (
            WorkflowPaused()
            | WorkflowResumed()
            | WorkflowRetried()
            | WorkflowRerun()
            | WorkflowRestarted()
        ):
            return control.evolve(state, event)
        case SignalReceived() | SignalConsumed():
            return signals.evolve(state, event)
        case WorkflowVariablesSet():
            return variables.evolve(state, event)
        case WorkflowQueued() | WorkflowAdmitted():
            return groups.evolve(state, event)
        case WorkflowDeleted():
            # Its history before the tombstone is purged: it reads as never started, so every
            # command (a retry, a rerun, a start under its id) is refused from here on.
            return WorkflowState(workflow_id=state.workflow_id, deleted=True)
    return state


def _ended(
    state: WorkflowState, status: WorkflowStatus, reason: str | None, at: datetime
) -> WorkflowState:
    return updated(state, status=status, end_reason=reason, ended_at=at, pause_note=None)


def replay(
    events: Iterable[Event | RecordedEvent], state: WorkflowState | None = None
) -> WorkflowState:
    """Fold a workflow's history (``evt.<wf>.>``) onto ``state``; same result as ``evolve``.

    Recorded events also set ``last_seq`` of the actor they belong to and ``stream_seq``; one at
    or below its actor's ``last_seq`` is already folded and skipped. Job
    events are folded into one working copy of the job map, so replaying n events of a workflow
    with many jobs costs O(n), not O(n x jobs) as folding with ``evolve`` one by one would.
    """
    current = state
    jobs: dict[str, JobState] | None = None  # the working copy, while job events run
    fanouts: dict[str, fanout_state.FanOutState] | None = None  # (the same, for the tallies)
    touched: set[str] = set()  # the jobs the working copy changed (for ``waiting``)
    stream_seq = 0
    for item in events:
        if isinstance(item, RecordedEvent):
            event, seq = item.event, item.seq
        else:
            event, seq = item, 0
        if isinstance(event, JobEvent):
            if current is None:
                current = blank(event.workflow_id)
            if jobs is None:
                jobs = dict(current.jobs)
            # (the working copy has every job the state has: not in it is pending)
            before = jobs.get(event.job) or job.pending(current.workflow_id, event.job)
            if not seq or seq > before.last_seq:  # else folded already (a host's own append)
                changed = job.evolve(before, event)
                jobs[event.job] = stamped(before, changed, seq) if seq else changed
                touched.add(event.job)
                if fanouts is not None or current.fanouts or isinstance(event, JobFannedOut):
                    fanouts = dict(current.fanouts) if fanouts is None else fanouts
                    fanout_state.fold(fanouts, before, changed, event)
        elif isinstance(event, WorkflowEvent):
            if current is None:
                current = blank(event.workflow_id)
            if jobs is not None:
                current, jobs = _with_jobs(current, jobs, fanouts, touched), None
                fanouts = None
                touched = set()
            if not seq or seq > current.last_seq:
                current = evolve(current, event)
                current = updated(current, last_seq=seq) if seq else current
        else:
            raise TypeError(f"not a workflow or job event: {event.event_type}")
        stream_seq = seq or stream_seq
    if current is None:
        raise ValueError("replay of no events needs an initial state")
    if jobs is not None:
        current = _with_jobs(current, jobs, fanouts, touched)
    return updated(current, stream_seq=stream_seq) if stream_seq else current


def _with_jobs(
    state: WorkflowState,
    jobs: dict[str, JobState],
    fanouts: dict[str, fanout_state.FanOutState] | None,
    touched: set[str],
) -> WorkflowState:
    waiting = _still_waiting(state, jobs, touched)
    if fanouts is None:
        return updated(state, jobs=jobs, waiting=waiting)
    return updated(state, jobs=jobs, fanouts=fanouts, waiting=waiting)


def _still_waiting(
    state: WorkflowState, jobs: Mapping[str, JobState], touched: set[str]
) -> frozenset[str] | None:
    """``state.waiting`` after the jobs ``touched`` changed: each of them in it if pending now
    (a job reopened by a retry), out of it if not (fan-out instances, not in ``order``, never)."""
    if state.waiting is None:
        return None
    rank = state.rank
    now_pending = {n for n in touched if n in rank and jobs[n].status is JobStatus.PENDING}
    return (state.waiting - touched) | now_pending
