"""The domain events: every fact the log can hold about workflows and jobs.

Workflow actor events live on ``evt.<p>.<wf>.wf.<Type>``, job actor events on
``evt.<p>.<wf>.job.<job>.<Type>`` (``JobQueued`` with its label set as one more token: the event is
the dispatch). Each class is one past-tense fact; ``type`` is its tag.
Add a field with a default to evolve a schema; bump ``v`` when meaning changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from events import priority as priority_rules
from events import subjects
from events.base import Event
from events.definition import (
    Concurrency,
    OnFailure,
    RateLimit,
    RetryPolicy,
    WorkflowDefinition,
)
from events.http_step import HttpStep
from events.labels import token_of


class JobStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    # Its handler said the work goes on elsewhere (``InProgress``): no worker, no lease, until
    # its callback time queues the same attempt again (``JobParked``).
    PARKED = "parked"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    # Waiting for the outside world (``wait_for``: a signal), on no worker.
    WAITING = "waiting"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_JOB


_TERMINAL_JOB = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.SKIPPED, JobStatus.CANCELLED}
)


class WorkflowStatus(StrEnum):
    # Waiting for a slot of its concurrency group (``WorkflowQueued``): no job runs yet.
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_WORKFLOW

    @property
    def is_open(self) -> bool:
        """Running or paused: the workflow has not ended (it may leave either status)."""
        return self not in _TERMINAL_WORKFLOW


_TERMINAL_WORKFLOW = frozenset(
    {WorkflowStatus.SUCCEEDED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED}
)


class JobSpec(BaseModel):
    """What a worker needs to run one attempt: rendered command, env, inputs, upstream data."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    run: str | None = None
    uses: str | None = None
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    env: dict[str, str] = Field(default_factory=dict)
    labels: tuple[str, ...] = ()
    timeout: float | None = None
    upstream_outputs: dict[str, dict[str, str]] = Field(default_factory=dict)
    # The job's ``rate_limit``: workers admit a start only within it (sdk/worker/rate_limits.py).
    rate_limit: RateLimit | None = None
    # The job's concurrency group, its name rendered: workers hold a slot of it while it runs.
    concurrency: Concurrency | None = None
    # The run's caller trace context (``WorkflowStarted.traceparent``), so that the worker's spans
    # of the attempt join the same trace; None when the run began no trace of its own.
    traceparent: str | None = None
    # A ``workflow:`` job's child reference (``with`` holds the child's inputs): no worker runs it.
    workflow: str | None = None
    # An http step's request, rendered (``events.http_step``); ``uses`` is then HTTP_HANDLER.
    http: HttpStep | None = None
    # The job's priority (its own, else its workflow's; None: the default, ``events.priority``):
    # a priority other than the default routes the dispatch to a consumer of its own.
    priority: int | None = Field(default=None, ge=priority_rules.LOWEST, le=priority_rules.HIGHEST)
    # The run's namespace (``WorkflowStarted.namespace``; None: the default one), a member of
    # the job's label set so that only its namespace's workers claim it (``events.namespaces``).
    namespace: str | None = None


class ParentLink(BaseModel):
    """Which parent job's attempt (and loop iteration) a sub-workflow runs for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workflow_id: str
    job: str
    attempt: int = Field(ge=1)


# --- workflow actor -------------------------------------------------------------------------


class WorkflowEvent(Event):
    actor_kind: ClassVar[str] = "wf"
    workflow_id: str

    def subject(self) -> str:
        return subjects.workflow_event(self.workflow_id, self.event_type)


class WorkflowStarted(WorkflowEvent):
    type: Literal["WorkflowStarted"] = "WorkflowStarted"
    definition: WorkflowDefinition
    inputs: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None
    started_at: datetime
    # A restart's new run: the workflow it runs again (``jetwork restart``).
    restarted_from: str | None = None
    # The caller's W3C ``traceparent`` when it started the run inside a trace of its own: the
    # run's spans join that trace (``telemetry/tracing.py``).
    traceparent: str | None = None
    # A sub-workflow: the parent's job whose attempt runs it (``actors.subworkflows``).
    parent: ParentLink | None = None
    # The namespace it runs in; None: the default one (``events.namespaces``).
    namespace: str | None = None


class WorkflowQueued(WorkflowEvent):
    """The run waits for a slot of its concurrency group ``group`` (rendered) before any job is
    queued; ``run``: the operator retries before it (0: the first run), each run queues anew."""

    type: Literal["WorkflowQueued"] = "WorkflowQueued"
    group: str
    limit: int = Field(ge=1)
    cancel_in_progress: bool = False
    run: int = 0
    at: datetime


class WorkflowAdmitted(WorkflowEvent):
    """Run ``run`` holds a slot of its concurrency group: its jobs may run (``actors.groups``)."""

    type: Literal["WorkflowAdmitted"] = "WorkflowAdmitted"
    group: str
    run: int = 0
    at: datetime


class WorkflowCancelRequested(WorkflowEvent):
    """Jobs whose condition holds under cancellation (``always()``) still run, unless ``force``."""

    type: Literal["WorkflowCancelRequested"] = "WorkflowCancelRequested"
    reason: str = "cancelled by user"
    force: bool = False
    requested_at: datetime


class WorkflowPaused(WorkflowEvent):
    """An operator paused the workflow: no job is queued until it is resumed (running jobs
    finish and their results are recorded; retries and the timeout that fall due wait)."""

    type: Literal["WorkflowPaused"] = "WorkflowPaused"
    by: str
    reason: str | None = None
    request_id: str | None = None
    at: datetime


class WorkflowResumed(WorkflowEvent):
    type: Literal["WorkflowResumed"] = "WorkflowResumed"
    by: str
    reason: str | None = None
    request_id: str | None = None
    at: datetime


class WorkflowRetried(WorkflowEvent):
    """An operator retried the ended workflow: it runs again; ``jobs`` run again (each reopened
    by a ``JobReopened``), the others keep their results."""

    type: Literal["WorkflowRetried"] = "WorkflowRetried"
    by: str
    reason: str | None = None
    request_id: str | None = None
    jobs: tuple[str, ...]
    at: datetime


class WorkflowRerun(WorkflowEvent):
    """An operator reran the ended workflow from ``from_job``: it runs again; ``jobs`` (it and
    everything downstream of it, in topological order) run again (each reopened by a
    ``JobReopened``), the others keep their results."""

    type: Literal["WorkflowRerun"] = "WorkflowRerun"
    by: str
    reason: str | None = None
    request_id: str | None = None
    from_job: str
    jobs: tuple[str, ...]
    at: datetime


class WorkflowRestarted(WorkflowEvent):
    """An operator restarted the ended workflow: a new run, ``restarted_as``, runs its
    definition with its inputs (its ``WorkflowStarted`` names this one). This run keeps its end."""

    type: Literal["WorkflowRestarted"] = "WorkflowRestarted"
    by: str
    reason: str | None = None
    request_id: str | None = None
    restarted_as: str
    at: datetime


# --- workflow variables (``jetwork set``) ---


class WorkflowVariablesSet(WorkflowEvent):
    """An operator set workflow variables (``${{ vars.KEY }}``): ``values`` replace those keys
    for every job not yet queued; jobs queued already keep what they were rendered with."""

    type: Literal["WorkflowVariablesSet"] = "WorkflowVariablesSet"
    by: str
    reason: str | None = None
    request_id: str | None = None
    values: dict[str, Any]
    at: datetime


class WorkflowSucceeded(WorkflowEvent):
    """``outputs``: the definition's ``outputs`` rendered when it succeeded (its result)."""

    type: Literal["WorkflowSucceeded"] = "WorkflowSucceeded"
    ended_at: datetime
    outputs: dict[str, str] = Field(default_factory=dict)


class WorkflowFailed(WorkflowEvent):
    """``failed_jobs`` lists the jobs that failed the workflow; ``timed_out`` marks its timeout."""

    type: Literal["WorkflowFailed"] = "WorkflowFailed"
    reason: str
    failed_jobs: tuple[str, ...] = ()
    timed_out: bool = False
    ended_at: datetime


class WorkflowCancelled(WorkflowEvent):
    type: Literal["WorkflowCancelled"] = "WorkflowCancelled"
    reason: str
    ended_at: datetime


# --- job actor ------------------------------------------------------------------------------


class JobEvent(Event):
    actor_kind: ClassVar[str] = "job"
    workflow_id: str
    job: str

    def subject(self) -> str:
        return subjects.job_event(self.workflow_id, self.job, self.event_type)


class JobQueued(JobEvent):
    """Attempt ``attempt`` may be claimed from ``not_before`` on (delays, ``at``).

    It carries the job's ``retry`` policy and ``on_failure`` so that the job actor can decide
    retries from its own history alone: workers decide their own results without the workflow.
    ``dispatch_timeout`` (seconds, the job's or the workflow's): an attempt no worker claimed
    that long after it became claimable fails the job.
    """

    type: Literal["JobQueued"] = "JobQueued"
    attempt: int = Field(ge=1)
    spec: JobSpec
    retry: RetryPolicy = RetryPolicy()
    on_failure: OnFailure = OnFailure.FAIL_WORKFLOW
    queued_at: datetime
    not_before: datetime | None = None
    # The last lease epoch granted before this attempt was queued (0 for a first attempt): with
    # it the event alone is the job actor's state for a claim (``sdk.worker.claims``).
    prior_epoch: int = 0
    dispatch_timeout: float | None = None
    # A loop's iteration runs as attempts after this many (its retry budget starts afresh).
    attempt_base: int = 0
    # A parked attempt queued again (``JobParked``): how many times it was parked so far, and
    # the progress outputs its handler returned; the next run reads them as ctx.poll_count and
    # ctx.progress_outputs.
    poll_count: int = 0
    progress: dict[str, str] = Field(default_factory=dict)

    def claimable_from(self) -> datetime:
        """When this attempt may be claimed: at once, or at ``not_before``."""
        if self.not_before is not None and self.not_before > self.queued_at:
            return self.not_before
        return self.queued_at

    def subject(self) -> str:
        if self.spec.priority is None:  # the hot path: no priority anywhere
            return subjects.job_queued(self.workflow_id, self.job, self.labelset_token)
        level = priority_rules.level(self.spec.priority)
        return subjects.job_queued(self.workflow_id, self.job, self.labelset_token, level)

    @property
    def labelset_token(self) -> str:
        """The label set whose workers may claim it (the token after ``JobQueued``)."""
        return token_of(self.spec.labels, self.spec.uses, self.spec.namespace)

    @property
    def route(self) -> str:
        """What its subject says after ``JobQueued.``: the label set's token, and its priority
        level when that is not the default (``gpu``, ``gpu.p9``). One dispatch consumer each."""
        token = self.labelset_token
        if self.spec.priority is None:
            return token
        level = priority_rules.level(self.spec.priority)
        return token if level is None else f"{token}.{priority_rules.token(level)}"


class JobSkipped(JobEvent):
    """The job will not run. ``by`` is None when the engine skipped it (its condition was false or
    what it needs did not succeed). With ``by`` an operator skipped it (``jetwork skip``): its
    dependents proceed as if it had succeeded with ``outputs``."""

    type: Literal["JobSkipped"] = "JobSkipped"
    reason: str
    at: datetime
    by: str | None = None
    outputs: dict[str, str] = Field(default_factory=dict)


class JobReopened(JobEvent):
    """An operator's retry put the ended job back to pending: it is judged again and runs as a
    new attempt (attempts and lease epochs go on counting from where they were)."""

    type: Literal["JobReopened"] = "JobReopened"
    by: str
    at: datetime


class JobStarted(JobEvent):
    """A worker claimed the job. ``epoch`` is the fencing token: it grows with every claim."""

    type: Literal["JobStarted"] = "JobStarted"
    attempt: int
    epoch: int
    worker_id: str
    delivery: int = 1
    dispatch_seq: int = 0
    lease_ttl: float
    started_at: datetime


class Claim(BaseModel):
    """The claim a result carries when the worker recorded both at once (a short job).

    A worker may run a job it was dispatched before appending its ``JobStarted``: when the run
    ends within the worker's ``claim_window``, the claim rides in the result's ``claimed`` and
    the result is appended under the sequence of the ``JobQueued`` it was dispatched (the same
    compare-and-set the claim would have made). Such a result stands for the ``JobStarted``
    followed by itself (``implied_start``); a longer run appends its ``JobStarted`` first.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    delivery: int = 1
    dispatch_seq: int = 0
    lease_ttl: float
    started_at: datetime


class JobSucceeded(JobEvent):
    type: Literal["JobSucceeded"] = "JobSucceeded"
    attempt: int
    epoch: int
    worker_id: str | None = None
    outputs: dict[str, str] = Field(default_factory=dict)
    result: Any = None
    ended_at: datetime
    claimed: Claim | None = None
    """Set when this result also records its claim (``Claim``)."""


class JobFailed(JobEvent):
    """An attempt failed. ``will_retry`` says whether a ``JobRetryScheduled`` follows.

    ``attempt == 0`` means the job failed before it was ever queued: its condition or its
    templates could not be evaluated. ``worker_id`` is None when the engine decided the failure
    (a job timeout) rather than a worker reporting it.
    """

    type: Literal["JobFailed"] = "JobFailed"
    attempt: int
    epoch: int
    worker_id: str | None = None
    error: str
    retryable: bool = True
    timed_out: bool = False
    will_retry: bool = False
    ended_at: datetime
    claimed: Claim | None = None
    """Set when this result also records its claim (``Claim``)."""


def with_implied_starts(events: Iterable[JobEvent]) -> Iterator[JobEvent]:
    """``events`` with the ``JobStarted`` each result recorded with its claim stands for put
    before it: for readers that count claims (attempt records, claim-to-result latencies)."""
    for event in events:
        if isinstance(event, JobSucceeded | JobFailed):
            started = implied_start(event)
            if started is not None:
                yield started
        yield event


def implied_start(event: JobSucceeded | JobFailed) -> JobStarted | None:
    """The ``JobStarted`` a result recorded with its claim stands for; None for any other."""
    claim = event.claimed
    if claim is None or event.worker_id is None:
        return None
    return JobStarted(
        workflow_id=event.workflow_id,
        job=event.job,
        attempt=event.attempt,
        epoch=event.epoch,
        worker_id=event.worker_id,
        delivery=claim.delivery,
        dispatch_seq=claim.dispatch_seq,
        lease_ttl=claim.lease_ttl,
        started_at=claim.started_at,
    )


class JobRetryScheduled(JobEvent):
    type: Literal["JobRetryScheduled"] = "JobRetryScheduled"
    attempt: int
    delay: float
    not_before: datetime


class JobCancelRequested(JobEvent):
    type: Literal["JobCancelRequested"] = "JobCancelRequested"
    reason: str
    requested_at: datetime


class JobCancelled(JobEvent):
    type: Literal["JobCancelled"] = "JobCancelled"
    reason: str
    worker_id: str | None = None
    at: datetime


class JobResultRejected(JobEvent):
    """A result arrived from an attempt that no longer holds the lease (fencing)."""

    type: Literal["JobResultRejected"] = "JobResultRejected"
    attempt: int
    epoch: int
    worker_id: str | None = None
    outcome: str
    reason: str
    at: datetime


# --- signals (``wait_for``, ``actors.signals``) ---------------------------------------------


class SignalReceived(WorkflowEvent):
    """A signal sent to the workflow (``jetwork signal``), kept until a job waiting for ``name``
    consumes it (``SignalConsumed``): one sent before its wait starts is never lost.
    ``signal_id`` is the sender's: the same id again records nothing."""

    type: Literal["SignalReceived"] = "SignalReceived"
    name: str
    signal_id: str
    data: dict[str, Any] = Field(default_factory=dict)
    by: str = "unknown"
    at: datetime


class SignalConsumed(WorkflowEvent):
    """The wait of job ``consumer`` took the signal ``signal_id``: that job's ``JobSucceeded``
    follows."""

    type: Literal["SignalConsumed"] = "SignalConsumed"
    name: str
    signal_id: str
    consumer: str
    at: datetime


class JobWaiting(JobEvent):
    """The job began waiting (no worker runs it) for signal ``signal``, or for a request to its
    webhook whose JSON body has every key of ``match`` (rendered) equal: that succeeds it,
    ``deadline`` (from its ``timeout``) fails it."""

    type: Literal["JobWaiting"] = "JobWaiting"
    attempt: int = Field(ge=1)
    signal: str | None = None
    match: dict[str, Any] | None = None
    deadline: datetime | None = None
    on_failure: OnFailure = OnFailure.FAIL_WORKFLOW
    at: datetime


# --- sub-workflows and loops (actors.subworkflows, actors.loops) -----------------------------


class SubWorkflowStarted(JobEvent):
    """Attempt ``attempt`` of a ``workflow:`` job runs as the workflow ``child_id`` (started by
    the parent's engine with a start command); the child's end settles the attempt."""

    type: Literal["SubWorkflowStarted"] = "SubWorkflowStarted"
    attempt: int = Field(ge=1)
    child_id: str
    spec: JobSpec
    retry: RetryPolicy = RetryPolicy()
    on_failure: OnFailure = OnFailure.FAIL_WORKFLOW
    attempt_base: int = 0
    started_at: datetime


class JobLooped(JobEvent):
    """A ``loop:`` job's iteration succeeded and its ``until`` did not hold: iteration
    ``iteration`` (from 1) runs next, as new attempts after ``attempt_base``."""

    type: Literal["JobLooped"] = "JobLooped"
    iteration: int = Field(ge=2)
    attempt_base: int
    at: datetime


# --- deletion (docs/reliability.md, "Deleting workflows") ---------------------------------------


class WorkflowDeleted(WorkflowEvent):
    """The ended workflow was deleted (``jetwork delete`` or the server's retention): every event
    of it before this one is purged from the log, its logs and views removed. This tombstone
    stays: the audit of who deleted what, and when."""

    type: Literal["WorkflowDeleted"] = "WorkflowDeleted"
    by: str
    reason: str | None = None
    name: str
    status: str  # the status it ended with
    ended_at: datetime | None = None
    at: datetime
    # The namespace it ran in (None: the default one): its WorkflowStarted, which says it too,
    # is purged, and a namespace's subscribers still see the tombstone by this.
    namespace: str | None = None


# --- fan-out (matrix and for_each) --------------------------------------------------------------


class JobFannedOut(JobEvent):
    """The workflow actor fanned the job out: instance ``<job>-<i>`` runs once per item, in
    order (the matrix's combinations, or ``for_each``'s list as evaluated when the job became
    ready). ``attempt`` counts the job's fan-outs (an operator's retry fans it out again)."""

    type: Literal["JobFannedOut"] = "JobFannedOut"
    attempt: int = Field(ge=1)
    items: list[Any]
    at: datetime


class JobFannedIn(JobEvent):
    """Every instance of a fanned-out job ended (or, after a failure with ``fail_fast``, every
    instance started has ended): the job's result. ``outputs``: each key as a JSON list of the
    instances' values in item order (null where an instance has none)."""

    type: Literal["JobFannedIn"] = "JobFannedIn"
    attempt: int
    succeeded: bool
    outputs: dict[str, str] = Field(default_factory=dict)
    error: str | None = None
    ended_at: datetime


# --- steps that need no worker (actors.inline_steps) -----------------------------------------


class JobSleepStarted(JobEvent):
    """A ``sleep``/``until`` job began its durable wait: the engine decides it succeeded when its
    timer fires at ``until`` (no worker is involved; a cancel withdraws it)."""

    type: Literal["JobSleepStarted"] = "JobSleepStarted"
    attempt: int = Field(ge=1)
    until: datetime
    started_at: datetime


# --- long-running jobs (a handler's InProgress) -------------------------------------------------


class JobParked(JobEvent):
    """The holder of lease ``epoch`` returned ``InProgress``: the work goes on elsewhere. The job
    holds no lease and no worker until ``not_before``, when the engine queues the same attempt
    again (``JobQueued`` with ``poll_count`` and ``progress`` = ``outputs``). ``poll_count``: the
    times this attempt has been parked, this one included."""

    type: Literal["JobParked"] = "JobParked"
    attempt: int
    epoch: int
    worker_id: str | None = None
    poll_count: int = Field(ge=1)
    outputs: dict[str, str] = Field(default_factory=dict)
    callback_after: float = Field(ge=0)
    not_before: datetime
    at: datetime


WORKFLOW_EVENTS: tuple[type[WorkflowEvent], ...] = (
    WorkflowStarted,
    WorkflowCancelRequested,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowRetried,
    WorkflowRerun,
    WorkflowRestarted,
    WorkflowVariablesSet,
    WorkflowSucceeded,
    WorkflowFailed,
    WorkflowCancelled,
    SignalReceived,
    SignalConsumed,
    WorkflowDeleted,
    WorkflowQueued,
    WorkflowAdmitted,
)
JOB_EVENTS: tuple[type[JobEvent], ...] = (
    JobQueued,
    JobSkipped,
    JobStarted,
    JobSucceeded,
    JobFailed,
    JobRetryScheduled,
    JobCancelRequested,
    JobCancelled,
    JobResultRejected,
    JobReopened,
    JobWaiting,
    SubWorkflowStarted,
    JobLooped,
    JobFannedOut,
    JobFannedIn,
    JobSleepStarted,
    JobParked,
)
