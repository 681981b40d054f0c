"""The views users query, as pure functions of the actors' folded state.

``WorkflowView`` is the stable JSON of ``jetwork status --json`` and ``run --wait --json``
(documented in the README): the projector stores it in KV, and the client computes the same view
straight from a workflow's history. One function builds both, so they cannot drift apart.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from actors import groups
from actors.fanout_state import job_names, parent_of
from actors.job import JobState
from actors.workflow import WorkflowState, stop_reason
from events.catalog import JobStatus, ParentLink

# Each job status's name, once: an enum member's ``.value`` costs a property call each time.
_JOB_STATUSES: tuple[str, ...] = tuple(status.value for status in JobStatus)


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WaitingFor(_View):
    """What a queued job waits for: a worker offering ``labels`` (and ``handler``, for a ``uses:``
    job). ``live_workers``: how many live workers do (0: it will wait until one starts);
    ``None`` when not looked up (the projector stores views without it)."""

    labels: tuple[str, ...] = ()
    handler: str | None = None
    live_workers: int | None = None

    @property
    def unserved(self) -> bool:
        """True when it is known that no live worker offers what the job needs."""
        return self.live_workers == 0

    def describe(self) -> str:
        """``labels gpu, linux and handler resize``; ``any worker`` for a job needing nothing."""
        parts = []
        if self.labels:
            parts.append(f"label{'s' if len(self.labels) > 1 else ''} {', '.join(self.labels)}")
        if self.handler:
            parts.append(f"handler {self.handler}")
        return " and ".join(parts) or "any worker"


class JobWait(_View):
    """What a ``waiting`` job waits for (``wait_for``): signal ``signal``, or a webhook request
    to ``hook`` (``/api/hooks/<token>``; None where the gateway's secret is not known) whose
    JSON body has every key of ``match``; until ``deadline`` (then it fails; None: no
    timeout)."""

    signal: str | None = None
    match: dict[str, Any] | None = None
    hook: str | None = None
    deadline: datetime | None = None

    def describe(self) -> str:
        until = f" until {self.deadline:%Y-%m-%d %H:%M:%S}Z" if self.deadline else ""
        if self.signal is not None:
            return f"waits for signal {self.signal}{until}"
        return f"waits for POST {self.hook or '/api/hooks/… (no gateway secret here)'}{until}"


class JobView(_View):
    status: str
    attempts: int
    outputs: dict[str, str] = Field(default_factory=dict)
    error: str | None = None
    worker_id: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    # Why it was cancelled or skipped.
    reason: str | None = None
    # While queued: the worker it waits for.
    waiting_for: WaitingFor | None = None
    # While waiting (``wait_for``): the signal it waits for.
    wait: JobWait | None = None
    # A ``workflow:`` job: its current or last child run; a ``loop:`` job: its iteration.
    child_workflow_id: str | None = None
    # What the child runs, as the run pinned it: ``deploy@3`` (a registered definition) or the
    # file's reference (``./child.yaml``).
    child_workflow: str | None = None
    iteration: int | None = None
    # A ``sleep``/``until`` job: when it wakes (it waits for no worker).
    sleeping_until: datetime | None = None
    # A handler's InProgress (actors/parking.py): the times this attempt was parked, and while
    # parked, when it is queued again.
    poll_count: int = 0
    callback_at: datetime | None = None


class WorkflowView(_View):
    workflow_id: str
    name: str
    status: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str | None = None
    # ``jetwork restart``: the run this one runs again, and the last run restarted from this one.
    restarted_from: str | None = None
    restarted_as: str | None = None
    # Workflow variables (``vars:`` and ``jetwork set``), as jobs not yet queued read them.
    vars: dict[str, Any] = Field(default_factory=dict)
    jobs: dict[str, JobView] = Field(default_factory=dict)
    # A sub-workflow: the parent job it runs for; the workflow's ``outputs`` once it succeeded.
    parent: ParentLink | None = None
    outputs: dict[str, str] = Field(default_factory=dict)
    # The registered version it runs (``jetwork run NAME@VERSION``), or its file's ``version:``.
    version: int | None = None
    # What ``jetwork list`` filters on besides ``parent``: the inputs it started with and
    # every label its jobs need.
    inputs: dict[str, Any] = Field(default_factory=dict)
    labels: tuple[str, ...] = ()
    # Its workflow concurrency group, rendered, once queued (``actors.groups``).
    group: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class WorkflowSummary(_View):
    """A row of ``jetwork list``: what filtering and sorting need, without the jobs."""

    workflow_id: str
    name: str
    status: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    job_counts: dict[str, int] = Field(default_factory=dict)
    # What its queued jobs wait for, one entry per distinct need.
    waiting_for: tuple[WaitingFor, ...] = ()
    parent_workflow_id: str | None = None  # a sub-workflow's parent
    # As in ``WorkflowView``: what ``list`` filters on.
    inputs: dict[str, Any] = Field(default_factory=dict)
    labels: tuple[str, ...] = ()
    group: str | None = None  # its workflow concurrency group (status ``queued``: waits for it)


def job_view(
    state: JobState,
    *,
    stopped: str | None = None,
    stopped_at: datetime | None = None,
    looping: bool = False,
) -> JobView:
    view = _job_view(state, stopped=stopped, stopped_at=stopped_at)
    if state.child_id is None and not looping:
        return view
    iteration = state.iteration if looping else None
    child = state.spec.workflow if state.child_id is not None else None
    return view.model_copy(
        update={
            "child_workflow_id": state.child_id,
            "child_workflow": child,
            "iteration": iteration,
        }
    )


def _job_view(
    state: JobState, *, stopped: str | None = None, stopped_at: datetime | None = None
) -> JobView:
    """The view of one job. ``stopped``: its workflow has ended for this reason, so a job not
    terminal yet is shown ``cancelled`` (its ``JobCancelled`` follows, or its worker stops it)."""
    status = state.status
    if stopped is not None and not status.is_terminal:
        return JobView(
            status=JobStatus.CANCELLED.value,
            attempts=state.attempt,
            outputs=dict(state.outputs),
            error=state.error,
            worker_id=state.worker_id,
            started_at=state.started_at,
            ended_at=stopped_at,
            reason=state.cancel_reason or stopped,
        )
    reason = None
    if status is JobStatus.CANCELLED:
        reason = state.cancel_reason
    elif status is JobStatus.SKIPPED:
        reason = state.skip_reason
    waiting = None
    if status is JobStatus.QUEUED and state.sleep_until is None:
        waiting = WaitingFor(labels=tuple(sorted(state.spec.labels)), handler=state.spec.uses)
    wait = None
    if status is JobStatus.WAITING and state.wait is not None:
        wait = JobWait(
            signal=state.wait.signal, match=state.wait.match, deadline=state.wait.deadline
        )
    return JobView(
        status=status.value,
        attempts=state.attempt,
        outputs=dict(state.outputs),
        error=state.error,
        worker_id=state.worker_id,
        started_at=state.started_at,
        ended_at=state.ended_at if status.is_terminal else None,
        reason=reason,
        waiting_for=waiting,
        wait=wait,
        sleeping_until=state.sleep_until if status is JobStatus.QUEUED else None,
        poll_count=state.poll_count,
        callback_at=state.not_before if status is JobStatus.PARKED else None,
    )


def _loops(state: WorkflowState, name: str) -> bool:
    """Whether ``name`` (a job, or an instance of a fanned-out one) has a ``loop:``."""
    assert state.definition is not None
    found = parent_of(state.fanouts, name) if name not in state.definition.jobs else None
    spec = state.definition.jobs.get(found[0] if found else name)
    # (A fanned-out job's instances loop, each on its own; the job itself has no iteration.)
    return spec is not None and spec.loop is not None and (found is not None or not spec.fan_out)


def workflow_view(state: WorkflowState) -> WorkflowView:
    """The view of a started workflow (``state.status`` must be set)."""
    if state.status is None or state.definition is None:
        raise ValueError(f"workflow {state.workflow_id} has not started")
    # Once the workflow has ended (a timeout), jobs it left unfinished read as cancelled, even
    # before their JobCancelled events are stored.
    stopped = stop_reason(state.end_reason) if state.status.is_terminal else None
    return WorkflowView(
        workflow_id=state.workflow_id,
        name=state.definition.name,
        status=state.status.value,
        started_at=state.started_at,
        ended_at=state.ended_at,
        # Why it ended, while paused who paused it and why, while queued what it waits for.
        reason=state.end_reason or state.pause_note or groups.queue_note(state),
        restarted_from=state.restarted_from,
        restarted_as=state.restarted_as,
        vars=dict(state.vars),
        version=state.definition.version,
        jobs={
            name: job_view(
                state.job(name),
                stopped=stopped,
                stopped_at=state.ended_at,
                looping=_loops(state, name),
            )
            for name in job_names(state.order, state.fanouts)
        },
        parent=state.parent,
        outputs=dict(state.outputs),
        inputs=dict(state.inputs),
        labels=tuple(sorted({lb for job in state.definition.jobs.values() for lb in job.labels})),
        group=state.group,
    )


def summary(view: WorkflowView) -> WorkflowSummary:
    counts = Counter(job.status for job in view.jobs.values())
    waiting: dict[tuple[tuple[str, ...], str | None], WaitingFor] = {}
    for job in view.jobs.values():
        if job.waiting_for is not None:
            need = job.waiting_for.model_copy(update={"live_workers": None})
            waiting.setdefault((need.labels, need.handler), need)
    return WorkflowSummary(
        workflow_id=view.workflow_id,
        name=view.name,
        status=view.status,
        started_at=view.started_at,
        ended_at=view.ended_at,
        job_counts={status: counts.get(status, 0) for status in _JOB_STATUSES},
        waiting_for=tuple(waiting[key] for key in sorted(waiting, key=str)),
        parent_workflow_id=view.parent.workflow_id if view.parent else None,
        inputs=view.inputs,
        labels=view.labels,
        group=view.group,
    )
