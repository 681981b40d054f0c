"""What the owner of a workflow does with what arrived for it: pure, no I/O.

``react(state, items, now)`` takes the workflow's state and the items a batch brought for it, in
order — recorded events (worker results, claims …), start and cancel requests, fired timers — and
returns everything that follows: the events to append (the workflow actor's and its jobs'), the
timers to arm and the cancel notices to push. It folds as it goes, so later items are judged on
what earlier ones decided, and ends with ``Advance`` run to its fixpoint: a start and the jobs it
queues, or a job's result and the next job it makes ready, are one decision (and one round trip).

Side effects are planned against the *current* state, so an item whose moment has passed (a
redelivered result, a stale timer) causes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from actors import groups, inline_steps, job, subworkflows, workflow
from actors.appends import Append
from actors.commands import (
    AdmitWorkflow,
    Advance,
    CancelWorkflow,
    ExpireLease,
    RequeueJob,
    StartWorkflow,
    TimeoutDispatch,
    TimeoutJob,
    TimeoutWorkflow,
    UnparkJob,
)
from actors.control import control_command
from actors.definitions.mapping import definition_mapping
from actors.engine import waits
from actors.engine.timers import (
    AnyTimer,
    CallbackTimer,
    DispatchTimeoutTimer,
    GroupTimer,
    JobTimeoutTimer,
    LeaseTimer,
    RetryTimer,
    SleepTimer,
    WaitTimeoutTimer,
    WorkflowTimeoutTimer,
)
from actors.workflow import WorkflowState
from events import namespaces, subjects
from events.base import Event, RecordedEvent
from events.catalog import (
    JobCancelled,
    JobCancelRequested,
    JobEvent,
    JobFailed,
    JobFannedIn,
    JobFannedOut,
    JobParked,
    JobQueued,
    JobRetryScheduled,
    JobSkipped,
    JobSleepStarted,
    JobStatus,
    JobWaiting,
    WorkflowEvent,
    WorkflowQueued,
    WorkflowRerun,
    WorkflowResumed,
    WorkflowRetried,
    WorkflowStarted,
    WorkflowStatus,
)
from events.definition import WorkflowDefinition
from events.errors import CommandRefused, WorkflowNotFound
from events.requests import (
    AdmitRequest,
    AnyRequest,
    CancelRequest,
    ChildEndedRequest,
    ControlRequest,
    RestartRequest,
    StartRequest,
)

# A job's backstop timer fires this long after the worker's own timeout should have: the worker
# enforces the timeout and reports first; the timer is for a worker that died holding the lease.
JOB_TIMEOUT_GRACE = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class Start:
    """A start request whose definition validated (``definition`` is the parsed one)."""

    request: StartRequest
    definition: WorkflowDefinition


@dataclass(frozen=True, slots=True)
class Cancel:
    request: CancelRequest


@dataclass(frozen=True, slots=True)
class Control:
    """An operator's pause, resume, skip, retry, rerun or restart."""

    request: ControlRequest


@dataclass(frozen=True, slots=True)
class Fired:
    """A timer that fired: from the stream (durable) or in process (exact)."""

    timer: AnyTimer
    from_stream: bool = False  # a command message to acknowledge (else an in-process timer)


@dataclass(frozen=True, slots=True)
class ChildEnded:
    """A sub-workflow of this workflow ended (``actors.subworkflows``)."""

    request: ChildEndedRequest


@dataclass(frozen=True, slots=True)
class Admit:
    """A run of this workflow was given a slot of its concurrency group (``actors.groups``)."""

    request: AdmitRequest


Item = RecordedEvent | Start | Cancel | Control | Fired | ChildEnded | Admit


@dataclass
class Reaction:
    """What follows from one batch of items for one workflow."""

    state: WorkflowState
    """The state with every item and decided event folded (decided ones without sequences)."""
    decided: list[Event] = field(default_factory=list)
    timers: list[AnyTimer] = field(default_factory=list)
    cancel_notices: list[str] = field(default_factory=list)
    created: dict[int, bool] = field(default_factory=dict)
    """Index of each ``Start`` item -> whether it created the workflow (False: it existed)."""
    unknown: list[int] = field(default_factory=list)
    """Indexes of ``Cancel`` and ``Control`` items for a workflow that was never started."""
    applied: dict[int, bool] = field(default_factory=dict)
    """Index of each ``Control`` item applied -> whether it changed anything."""
    refused: dict[int, str] = field(default_factory=dict)
    """Index of each ``Control`` item refused -> why (``CommandRefused``), and of each ``Start``
    whose id another namespace has."""
    starts: list[StartRequest] = field(default_factory=list)
    """Starts to send: the new run of each restart applied (again for a redelivered restart,
    whose start may not have been sent: a start is idempotent and its publish de-duplicated)."""
    outbox: list[AnyRequest] = field(default_factory=list)
    """Sub-workflow commands the state asks for (``subworkflows.outbox``), sent every time."""
    group_calls: list[groups.GroupCall] = field(default_factory=list)
    """What to do in the workflow's concurrency group's queue (``actors.groups.calls``)."""
    group_look: bool = False
    """A group timer fired or a grant came: look at the group again whatever was decided."""

    def stages(self, base: WorkflowState) -> list[list[Append]]:
        """The decided events as CAS appends, stage by stage (see ``stages``)."""
        return stages(base, self.decided)


def react(state: WorkflowState, items: Sequence[Item], now: datetime) -> Reaction:
    """Fold and decide ``items`` in order, then advance the workflow as far as it goes."""
    reaction = Reaction(state=state)
    triggers: list[Event] = []
    # Recorded events in a row are folded in one replay: it copies the job map once, which
    # costs as much as the workflow has jobs (10,000 for a large fan-out), not once per event.
    unfolded: list[RecordedEvent] = []
    for index, item in enumerate(items):
        if isinstance(item, RecordedEvent):
            # (The row before it holds other actors' events or older ones of its actor: the
            # state before the row knows its actor's sequence as well as the one after.)
            if item.seq > _actor_seq(reaction.state, item.event):  # else: folded already
                unfolded.append(item)
            # A trigger even when folded already (a state read after a takeover holds it): what
            # it asks for is judged on the current state, so a moment passed causes nothing.
            triggers.append(item.event)
            continue
        if unfolded:
            reaction.state = workflow.replay(unfolded, reaction.state)
            unfolded = []
        if isinstance(item, Start):
            taken = _taken_elsewhere(reaction.state, item.request)
            if taken is not None:
                reaction.refused[index] = taken
                continue
            decided = workflow.decide(reaction.state, _start_command(item, now))
            reaction.created[index] = bool(decided)
            triggers += _apply(reaction, decided)
        elif isinstance(item, Cancel):
            try:
                decided = workflow.decide(reaction.state, _cancel_command(item, now))
            except WorkflowNotFound:
                reaction.unknown.append(index)
                continue
            triggers += _apply(reaction, decided)
        elif isinstance(item, Control):
            try:
                decided = workflow.decide(reaction.state, control_command(item.request, now))
            except WorkflowNotFound:
                reaction.unknown.append(index)
                continue
            except CommandRefused as refusal:
                reaction.refused[index] = str(refusal)
                continue
            reaction.applied[index] = bool(decided)
            triggers += _apply(reaction, decided)
            if isinstance(item.request, RestartRequest):
                reaction.starts.append(restart_start(reaction.state, item.request))
        elif isinstance(item, ChildEnded):
            triggers += _apply(reaction, subworkflows.settle(reaction.state, item.request, now))
        elif isinstance(item, Admit):
            wf, run = item.request.workflow_id, item.request.run
            admit = AdmitWorkflow(workflow_id=wf, run=run, now=now)
            reaction.group_look = True  # (a grant to a run that ended: its slot goes back)
            triggers += _apply(reaction, workflow.decide(reaction.state, admit))
        else:
            triggers += _apply(reaction, _fire(reaction, item.timer, now))
    if unfolded:
        reaction.state = workflow.replay(unfolded, reaction.state)
    _settle(reaction, triggers, now)
    _notice_jobs_ended_here(reaction)
    reaction.group_calls = groups.calls(reaction.state, reaction.decided, look=reaction.group_look)
    if reaction.state.parent is not None or (
        reaction.state.definition is not None and reaction.state.definition.workflow_jobs
    ):
        reaction.outbox = subworkflows.outbox(reaction.state)
    return reaction


def _notice_jobs_ended_here(reaction: Reaction) -> None:
    """A cancel notice for every job this reaction ended (cancelled, failed, skipped).

    A worker may run a job its log still shows queued: a short run's claim is appended with its
    result (``WorkerConfig.claim_window``). The notice makes it look at the log now and stop; a
    worker not yet delivered the job remembers it (``sdk.worker.revoked``) and claims it first.
    """
    notices = reaction.cancel_notices
    named = set(notices)  # (a cancelled fan-out ends 10,000 jobs: no scan of the list per job)
    for event in reaction.decided:
        if isinstance(event, _ENDED_HERE) and event.job not in named:
            named.add(event.job)
            notices.append(event.job)


_ENDED_HERE: Final = (JobCancelled, JobFailed, JobSkipped)


def _settle(reaction: Reaction, triggers: list[Event], now: datetime) -> None:
    """Plan what the triggers ask for; requeue due retries and advance until nothing follows."""
    resumed = any(isinstance(event, WorkflowResumed) for event in triggers)
    while True:
        requeue = _plan(reaction, triggers, now)
        triggers = []
        if resumed:
            # What fell due while it was paused: the timeout, if it has passed (else its timer
            # is still to fire); the retries due are in ``requeue``.
            resumed = False
            timeout = TimeoutWorkflow(workflow_id=reaction.state.workflow_id, now=now)
            triggers += _apply(reaction, workflow.decide(reaction.state, timeout))
        if reaction.state.paused:
            requeue = []  # retries wait for the resume, which queues those due by then
        for name, attempt in requeue:
            wf = reaction.state.workflow_id
            command = RequeueJob(workflow_id=wf, job=name, attempt=attempt, now=now)
            triggers += _apply(reaction, job.decide(reaction.state.job(name), command))
        advance = Advance(workflow_id=reaction.state.workflow_id, now=now)
        triggers += _apply(reaction, workflow.decide(reaction.state, advance))
        triggers += _apply(reaction, waits.resolve(reaction.state, now))
        if not triggers:
            return


def _actor_seq(state: WorkflowState, event: Event) -> int:
    """The last sequence folded of the actor ``event`` belongs to."""
    name = getattr(event, "job", None)
    return state.last_seq if name is None else state.job(name).last_seq


def _apply(reaction: Reaction, events: Iterable[Event]) -> list[Event]:
    decided = list(events)
    if decided:
        reaction.state = workflow.replay(decided, reaction.state)
        reaction.decided += decided
    return decided


def _taken_elsewhere(state: WorkflowState, request: StartRequest) -> str | None:
    """Why a start is refused when its id names a workflow of another namespace (None: it
    does not). Ids are global (one actor each), so the same id cannot run in two namespaces;
    the refusal does not say which namespace has it."""
    if state.status is None or state.namespace == namespaces.stored(request.namespace):
        return None
    return (
        f"cannot start workflow {request.workflow_id!r} in namespace "
        f"{namespaces.shown(request.namespace)!r}: the id is taken in another namespace"
    )


def _start_command(item: Start, now: datetime) -> StartWorkflow:
    request = item.request
    return StartWorkflow(
        workflow_id=request.workflow_id,
        definition=item.definition,
        inputs=request.inputs,
        idempotency_key=request.idempotency_key,
        restarted_from=request.restarted_from,
        traceparent=request.traceparent,
        parent=request.parent,
        namespace=request.namespace,
        now=now,
    )


def restart_start(state: WorkflowState, request: RestartRequest) -> StartRequest:
    """The start of a restart's new run: the same definition and inputs, naming the old run."""
    assert state.definition is not None  # a restart is applied to a started workflow only
    return StartRequest(
        workflow_id=request.restarted_as,
        definition=definition_mapping(state.definition),
        inputs=dict(state.inputs),
        restarted_from=state.workflow_id,
        namespace=state.namespace,
    )


def _cancel_command(item: Cancel, now: datetime) -> CancelWorkflow:
    request = item.request
    return CancelWorkflow(
        workflow_id=request.workflow_id, reason=request.reason, force=request.force, now=now
    )


def _fire(reaction: Reaction, timer: AnyTimer, now: datetime) -> list[Event]:
    state = reaction.state
    wf = state.workflow_id
    if isinstance(timer, WorkflowTimeoutTimer):
        return workflow.decide(state, TimeoutWorkflow(workflow_id=wf, now=now))
    if isinstance(timer, JobTimeoutTimer):
        return _job_timeout(reaction, timer, now)
    if isinstance(timer, LeaseTimer):
        command = ExpireLease(workflow_id=wf, job=timer.job, epoch=timer.epoch, now=now)
        return list(job.decide(state.job(timer.job), command))
    if isinstance(timer, WaitTimeoutTimer):
        return waits.fire(state, timer, now)
    if isinstance(timer, CallbackTimer):  # a parked job's next look (actors/parking.py)
        unpark = UnparkJob(workflow_id=wf, job=timer.job, attempt=timer.attempt,
                           poll_count=timer.poll_count, now=now)  # fmt: skip
        return list(job.decide(state.job(timer.job), unpark))
    if isinstance(timer, DispatchTimeoutTimer):
        dispatch = TimeoutDispatch(workflow_id=wf, job=timer.job, attempt=timer.attempt,
                                   poll_count=timer.poll_count, now=now)  # fmt: skip
        return list(job.decide(state.job(timer.job), dispatch))
    if isinstance(timer, SleepTimer):
        return list(inline_steps.wake(state.job(timer.job), timer.attempt, now))
    if isinstance(timer, GroupTimer):
        if state.queued_run == timer.run and state.status is WorkflowStatus.QUEUED:
            reaction.group_look = True  # still waiting: look again, and again later
            reaction.timers.append(group_timer(state, now, check=timer.check + 1))
        elif state.status is not None and state.status.is_terminal:
            reaction.group_look = True  # (its slot given back, once more)
        return []
    if state.paused:
        return []  # the retry waits: the resume queues it (its moment has passed by then)
    requeue = RequeueJob(workflow_id=wf, job=timer.job, attempt=timer.attempt, now=now)
    return list(job.decide(state.job(timer.job), requeue))


def _job_timeout(reaction: Reaction, timer: JobTimeoutTimer, now: datetime) -> list[Event]:
    """Time the attempt out once it has run past its timeout and grace; else look again then.

    The state must hold the job's claims (the engine reads the job before a timeout timer is
    decided: it does not follow claims as they happen).
    """
    current = reaction.state.job(timer.job)
    timeout = current.spec.timeout
    if current.attempt != timer.attempt or timeout is None:
        return []  # another attempt since: a stale timer
    limit = timedelta(seconds=timeout) + JOB_TIMEOUT_GRACE
    if current.status is JobStatus.QUEUED:
        due = now + limit  # not claimed yet: it cannot time out before it ran that long
    elif current.status is JobStatus.RUNNING and current.started_at is not None:
        due = current.started_at + limit
        if due <= now:
            command = TimeoutJob(**current.ids, epoch=current.epoch, now=now)
            return list(job.decide(current, command))
    else:
        return []  # ended
    reaction.timers.append(timer.model_copy(update={"due": due}))
    return []


def _plan(reaction: Reaction, triggers: list[Event], now: datetime) -> list[tuple[str, int]]:
    """Timers and notices the triggers ask for; returns retries due now (job, attempt)."""
    state = reaction.state
    requeue: list[tuple[str, int]] = []
    for event in triggers:
        if isinstance(event, WorkflowStarted | WorkflowRetried | WorkflowRerun):
            _plan_workflow_timeout(state, reaction)
        elif isinstance(event, WorkflowResumed):
            requeue += _due_retries(state, now)
        elif isinstance(event, JobQueued):
            _plan_job_timeout(state, event, reaction)
        elif isinstance(event, WorkflowQueued) and state.queued_run == event.run:
            reaction.timers.append(group_timer(state, now, check=1))
        elif isinstance(event, JobWaiting):
            reaction.timers += filter(None, [waits.plan(state, event)])
        elif isinstance(event, JobSleepStarted):
            reaction.timers.append(
                SleepTimer(
                    workflow_id=state.workflow_id,
                    job=event.job,
                    attempt=event.attempt,
                    due=event.until,
                )
            )
        elif isinstance(event, JobRetryScheduled):
            current = state.job(event.job)
            if current.status is not JobStatus.RETRYING or current.attempt + 1 != event.attempt:
                continue
            if event.delay <= 0:
                requeue.append((event.job, event.attempt))
            else:
                reaction.timers.append(
                    RetryTimer(
                        workflow_id=state.workflow_id,
                        job=event.job,
                        attempt=event.attempt,
                        due=event.not_before,
                    )
                )
        elif isinstance(event, JobParked):
            reaction.timers.append(callback_timer(state, event))
        elif (
            isinstance(event, JobCancelRequested)
            and state.job(event.job).status is JobStatus.RUNNING
        ):
            reaction.cancel_notices.append(event.job)
    return requeue


def group_timer(state: WorkflowState, now: datetime, *, check: int) -> GroupTimer:
    """The next look at the group of a queued run (``actors.groups.RECHECK`` from now)."""
    due = now + timedelta(seconds=groups.RECHECK)
    return GroupTimer(workflow_id=state.workflow_id, run=state.queued_run, check=check, due=due)


def callback_timer(state: WorkflowState, event: JobParked) -> CallbackTimer:
    """The timer that queues a parked attempt again at its callback time."""
    return CallbackTimer(
        workflow_id=state.workflow_id,
        job=event.job,
        attempt=event.attempt,
        poll_count=event.poll_count,
        due=event.not_before,
    )


def _due_retries(state: WorkflowState, now: datetime) -> list[tuple[str, int]]:
    """Retries whose moment came while the workflow was paused (their timers found it paused)."""
    return [
        (name, current.attempt + 1)
        for name in state.jobs  # (fan-out instances included)
        if (current := state.job(name)).status is JobStatus.RETRYING
        and (current.not_before is None or current.not_before <= now)
    ]


def _plan_workflow_timeout(state: WorkflowState, reaction: Reaction) -> None:
    deadline = state.timeout_deadline()
    if deadline is not None and state.status is not None and not state.status.is_terminal:
        reaction.timers.append(
            WorkflowTimeoutTimer(workflow_id=state.workflow_id, due=deadline, run=state.retries)
        )


def _plan_job_timeout(state: WorkflowState, event: JobQueued, reaction: Reaction) -> None:
    if state.job(event.job).attempt != event.attempt:
        return  # superseded since
    if event.dispatch_timeout is not None:
        due = event.claimable_from() + timedelta(seconds=event.dispatch_timeout)
        reaction.timers.append(
            DispatchTimeoutTimer(
                workflow_id=state.workflow_id,
                job=event.job,
                attempt=event.attempt,
                poll_count=event.poll_count,
                due=due,
            )
        )
    timeout = event.spec.timeout
    if timeout is None:
        return
    due = event.queued_at + timedelta(seconds=timeout) + JOB_TIMEOUT_GRACE
    reaction.timers.append(
        JobTimeoutTimer(
            workflow_id=state.workflow_id, job=event.job, attempt=event.attempt, due=due
        )
    )


def stages(state: WorkflowState, events: Sequence[Event]) -> list[list[Append]]:
    """Group decided events into appends, in stages appended one after the other.

    Job actors are independent of each other, so a run of job events is one stage with one
    append per job (a fan-out of 1,000 jobs is one round trip, not 1,000); a fanned-out job's
    ``JobFannedOut`` and its end (``JobFannedIn``, ``JobCancelled``) are a stage each. Workflow
    events are a
    stage of their own, after everything decided before them and before everything decided
    after: a workflow starts before its jobs are queued and ends after the job events it follows
    from, so a conflict part-way never leaves the log saying more than was decided, in order.
    ``expected_last_seq`` is the actor's sequence in ``state``: an actor appended to in an
    earlier stage expects what that append landed at (the engine fills it in when it sends).
    """
    result: list[list[Append]] = []
    run: dict[str, tuple[int, list[WorkflowEvent | JobEvent]]] = {}
    wf_filter = subjects.workflow_actor_filter(state.workflow_id)

    def close_run() -> None:
        if run:
            result.append([Append(key, last, tuple(group)) for key, (last, group) in run.items()])
            run.clear()

    fanned = set(state.fanouts) | {e.job for e in events if isinstance(e, JobFannedOut)}
    for event in events:
        if isinstance(event, JobFannedOut | JobFannedIn) or (
            fanned and isinstance(event, JobCancelled) and event.job in fanned
        ):
            # A stage of its own: a fanned-out job's end follows from its instances' events
            # decided before it (a cancel that conflicts must not leave it recorded), and
            # instances are queued only once the fan-out that names them is in the log.
            close_run()
            key = subjects.job_actor_filter(event.workflow_id, event.job)
            result.append([Append(key, state.job(event.job).last_seq, (event,))])
        elif isinstance(event, JobEvent):
            key = subjects.job_actor_filter(event.workflow_id, event.job)
            run.setdefault(key, (state.job(event.job).last_seq, []))[1].append(event)
        elif isinstance(event, WorkflowEvent):
            close_run()
            last = result[-1][0] if result and result[-1][0].actor_filter == wf_filter else None
            if last is not None:  # consecutive workflow events: one append
                result[-1] = [Append(wf_filter, last.expected_last_seq, (*last.events, event))]
            else:
                result.append([Append(wf_filter, state.last_seq, (event,))])
    close_run()
    return result
