"""Validated, normalised workflow definitions: pure data.

These models are what a workflow *is* once validated (durations in seconds, names checked).
Parsing YAML or a builder into them, and reporting every problem with its location, lives in
``actors.definitions``. ``WorkflowStarted`` carries a ``WorkflowDefinition`` so that a workflow's
history is self-contained: replay never needs the original file.
"""

from __future__ import annotations

import functools
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from events.http_step import HttpStep


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Backoff(StrEnum):
    NONE = "none"
    FIXED = "fixed"
    EXPONENTIAL = "exponential"
    LINEAR = "linear"


class OnFailure(StrEnum):
    FAIL_WORKFLOW = "fail_workflow"
    CONTINUE = "continue"
    RETRY_FOREVER = "retry_forever"


class RetryPolicy(_Frozen):
    """How often a job is attempted and how long to wait between attempts (seconds)."""

    max_attempts: int = Field(default=1, ge=1)
    backoff: Backoff = Backoff.NONE
    delay: float = Field(default=0.0, ge=0)
    max_delay: float | None = Field(default=None, ge=0)

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 = first retry). Attempt 1 never waits."""
        if attempt <= 1 or self.backoff is Backoff.NONE:
            return 0.0
        retry = attempt - 1
        if self.backoff is Backoff.FIXED:
            wait = self.delay
        elif self.backoff is Backoff.LINEAR:
            wait = self.delay * retry
        else:
            wait = self.delay * (2 ** (retry - 1))
        return min(wait, self.max_delay) if self.max_delay is not None else wait


MAX_RATE_WINDOW: float = 86400.0  # a day: the rate counters' bucket keeps a day (events/topology)


class RateLimit(_Frozen):
    """At most ``limit`` attempts start per window of ``per`` seconds, across every worker and
    gateway (``sdk/worker/rate_limits.py``)."""

    limit: int = Field(ge=1)
    per: float = Field(gt=0, le=MAX_RATE_WINDOW)


class Concurrency(_Frozen):
    """At most ``limit`` attempts of the jobs in ``group`` run at once, across every worker and
    gateway (``sdk/worker/concurrency.py``); on a whole workflow, at most ``limit`` runs of the
    group (``actors/groups.py``). In a definition ``group`` is a template
    (``deploy-${{ inputs.env }}``); in a queued job's spec it is rendered.
    ``cancel_in_progress``: a newcomer cancels the group's older members instead of waiting
    behind them (GitHub Actions' ``cancel-in-progress``)."""

    group: str = Field(min_length=1)
    limit: int = Field(default=1, ge=1)
    cancel_in_progress: bool = False


class InputSpec(_Frozen):
    default: Any = None
    required: bool = False
    description: str | None = None
    # The JSON Schema subset the value must meet (``type``, ``enum``, ``minimum`` …; written
    # beside ``default`` in a file), checked at every start: ``actors.definitions.input_schema``.
    json_schema: dict[str, Any] = Field(default_factory=dict)


class WebhookWait(_Frozen):
    """``wait_for: {webhook: {match: {...}}}``: a request to the job's hook URL whose JSON body
    has every key of ``match`` equal (values may be templates, rendered when the wait starts)."""

    match: dict[str, Any] = Field(default_factory=dict)


class WaitFor(_Frozen):
    """``wait_for:`` of a job that waits for the outside world instead of running on a worker:
    ``signal`` (its name) arrives, or a matching request to its ``webhook``; or ``timeout``
    (seconds) passes and the job fails. Exactly one of ``signal`` and ``webhook`` is set."""

    signal: str | None = None
    webhook: WebhookWait | None = None
    timeout: float | None = Field(default=None, gt=0)


class LoopSpec(_Frozen):
    """``loop:``: run the job again until ``until`` (over its latest ``outputs``) holds."""

    until: str
    max_iterations: int = Field(ge=1)


class FanOut(_Frozen):
    """A job run once per item, as instances ``<job>-<index>``: a static ``matrix`` (its
    combinations, expanded when the definition is validated) or ``for_each`` (an expression
    evaluated when the job becomes ready; or a literal list, kept in ``items``)."""

    items: tuple[Any, ...] | None = None
    for_each: str | None = None
    is_matrix: bool = False  # the item reads as ``matrix`` (else as ``item``)
    fail_fast: bool = True
    max_parallel: int | None = Field(default=None, ge=1)


class AtLeast(_Frozen):
    """``needs_at_least``: the job is ready once ``count`` of the jobs ``of`` succeeded."""

    count: int = Field(ge=1)
    of: tuple[str, ...]


class JobDefinition(_Frozen):
    """One job of the DAG. Exactly one of its kinds is set: ``run`` (shell), ``uses`` (named
    handler), ``wait_for`` (a signal or webhook, no worker), ``set`` (outputs from expressions),
    ``sleep`` or ``until`` (a durable wait)."""

    name: str
    run: str | None = None
    uses: str | None = None
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    labels: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    needs_any: tuple[str, ...] = ()
    if_: str | None = Field(default=None, alias="if")
    env: dict[str, str] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0)
    # Fail the job if no worker claims an attempt this long after it became claimable.
    dispatch_timeout: float | None = Field(default=None, gt=0)
    retry: RetryPolicy = RetryPolicy()
    on_failure: OnFailure = OnFailure.FAIL_WORKFLOW
    delay: float | None = Field(default=None, ge=0)
    at: datetime | None = None
    # Starts of this job's handler (``uses``) or label set limited across all workers.
    rate_limit: RateLimit | None = None
    # At most ``limit`` of the group's attempts run at once (the group name is templated).
    concurrency: Concurrency | None = None
    wait_for: WaitFor | None = None
    # Sub-workflows and loops (``actors.subworkflows``, ``actors.loops``): ``workflow`` names a
    # child definition embedded in the workflow's ``workflows``.
    workflow: str | None = None
    loop: LoopSpec | None = None
    fan_out: FanOut | None = None
    # Steps that need no worker (``actors.inline_steps``) and n-of-m joins (``actors.quorum``).
    set_: dict[str, str] | None = Field(default=None, alias="set")
    sleep: float | None = Field(default=None, ge=0)
    until: datetime | None = None
    needs_at_least: AtLeast | None = None
    # An http step (``events.http_step``): run by jetwork server's built-in worker.
    http: HttpStep | None = None
    # Dispatched before the lower ones when workers are scarce (``events.priority``); None: the
    # workflow's priority.
    priority: int | None = Field(default=None, ge=1, le=10)

    @functools.cached_property
    def upstream(self) -> tuple[str, ...]:
        """``needs``, ``needs_any`` then ``needs_at_least.of`` (computed once: the engine asks
        after every event)."""
        listed = self.needs + tuple(n for n in self.needs_any if n not in self.needs)
        if self.needs_at_least is None:
            return listed
        return listed + tuple(n for n in self.needs_at_least.of if n not in listed)


class ScheduleRule(_Frozen):
    """One entry of a workflow's ``schedule:``: a cron expression (in ``timezone``, UTC when
    unset) or a fixed period ``every`` (seconds, aligned on the Unix epoch). ``catch_up``: what
    runs for ticks missed while nothing could start them (``last``: the latest one; ``skip``:
    none). ``overlap``: ``skip`` a tick while the schedule's previous run is still running."""

    cron: str | None = None
    timezone: str | None = None
    every: float | None = Field(default=None, gt=0)
    catch_up: Literal["last", "skip"] = "last"
    overlap: Literal["allow", "skip"] = "allow"


class WorkflowDefinition(_Frozen):
    name: str
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    # Workflow variables (``${{ vars.KEY }}``) a run starts with; ``jetwork set`` changes them.
    vars: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0)
    # The default of every job's dispatch_timeout.
    dispatch_timeout: float | None = Field(default=None, gt=0)
    jobs: dict[str, JobDefinition]
    # The workflow's result: templates over ``needs.<job>``, rendered when it succeeds.
    outputs: dict[str, str] = Field(default_factory=dict)
    # Child definitions of ``workflow:`` jobs, by the reference the job gives (its path as written):
    # embedded when the workflow is started, so that its history is self-contained.
    workflows: dict[str, WorkflowDefinition] = Field(default_factory=dict)
    # At most ``limit`` runs of the group at once, across every engine (``actors/groups.py``).
    concurrency: Concurrency | None = None

    # Definitions by name and version, and schedules (``jetwork definitions``/``schedules``):
    # the registered version this definition is (or the file's ``version:``), and its ticks.
    version: int | None = Field(default=None, ge=1)
    schedule: tuple[ScheduleRule, ...] = ()
    # The default priority of its jobs (``events.priority``); a start may set it for one run.
    priority: int | None = Field(default=None, ge=1, le=10)

    @functools.cached_property
    def loop_jobs(self) -> tuple[str, ...]:
        """Jobs with a ``loop`` (computed once: the engine asks after every event)."""
        return tuple(name for name, job in self.jobs.items() if job.loop is not None)

    @functools.cached_property
    def workflow_jobs(self) -> tuple[str, ...]:
        """Jobs that run a sub-workflow (computed once)."""
        return tuple(name for name, job in self.jobs.items() if job.workflow is not None)
