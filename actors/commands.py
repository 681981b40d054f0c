"""Commands: imperative requests that an actor decides into events (or refuses).

Every command carries ``now`` (the caller's clock) and the ids it needs, so that ``decide`` stays
pure. Job commands name their actor (``workflow_id`` + ``job``) so that a host can route them;
each has a ``type`` tag so that commands can travel as JSON on command subjects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from events.base import Command
from events.catalog import ParentLink
from events.definition import WorkflowDefinition

# --- job actor ------------------------------------------------------------------------------


class JobCommand(Command):
    workflow_id: str
    job: str
    now: datetime


class ClaimJob(JobCommand):
    """A worker got dispatch message ``dispatch_seq`` (its ``delivery``-th time) for ``attempt``."""

    type: Literal["ClaimJob"] = "ClaimJob"
    attempt: int = Field(ge=1)
    worker_id: str
    delivery: int = Field(default=1, ge=1)
    dispatch_seq: int = 0
    lease_ttl: float = Field(gt=0)


class CompleteJob(JobCommand):
    """The holder of lease ``epoch`` finished successfully."""

    type: Literal["CompleteJob"] = "CompleteJob"
    epoch: int
    worker_id: str | None = None
    outputs: dict[str, str] = Field(default_factory=dict)
    result: Any = None


class FailJob(JobCommand):
    """The holder of lease ``epoch`` failed; ``retryable=False`` forbids any retry."""

    type: Literal["FailJob"] = "FailJob"
    epoch: int
    worker_id: str | None = None
    error: str
    retryable: bool = True
    timed_out: bool = False


class TimeoutJob(JobCommand):
    """The job's timeout timer, armed when lease ``epoch`` started, fired."""

    type: Literal["TimeoutJob"] = "TimeoutJob"
    epoch: int


class TimeoutDispatch(JobCommand):
    """The dispatch timer of ``attempt`` fired: fail the job if no worker has claimed it."""

    type: Literal["TimeoutDispatch"] = "TimeoutDispatch"
    attempt: int = Field(ge=1)
    # The attempt's queueing it was armed for: a parked attempt is queued again (actors/parking).
    poll_count: int = 0


class RequeueJob(JobCommand):
    """The retry timer fired. ``attempt`` (if given) guards against a stale timer."""

    type: Literal["RequeueJob"] = "RequeueJob"
    attempt: int | None = None


class CancelJob(JobCommand):
    type: Literal["CancelJob"] = "CancelJob"
    reason: str = "cancelled"


class ConfirmCancelled(JobCommand):
    """The holder of lease ``epoch`` stopped the job after a cancel request."""

    type: Literal["ConfirmCancelled"] = "ConfirmCancelled"
    epoch: int
    worker_id: str | None = None


# --- workflow actor -------------------------------------------------------------------------


class WorkflowCommand(Command):
    workflow_id: str
    now: datetime


class StartWorkflow(WorkflowCommand):
    type: Literal["StartWorkflow"] = "StartWorkflow"
    definition: WorkflowDefinition
    inputs: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None
    restarted_from: str | None = None
    traceparent: str | None = None
    parent: ParentLink | None = None


class CancelWorkflow(WorkflowCommand):
    """``force`` also stops jobs that run regardless of cancellation (``if: always()``)."""

    type: Literal["CancelWorkflow"] = "CancelWorkflow"
    reason: str = "cancelled by user"
    force: bool = False


class OperatorCommand(WorkflowCommand):
    """An operator's control of a run. ``by`` says who (recorded in the log with ``reason``);
    ``request_id`` makes a redelivered request a no-op rather than a refusal."""

    by: str = Field(min_length=1, max_length=256)
    reason: str | None = Field(default=None, max_length=2000)
    request_id: str | None = None


class PauseWorkflow(OperatorCommand):
    type: Literal["PauseWorkflow"] = "PauseWorkflow"


class ResumeWorkflow(OperatorCommand):
    type: Literal["ResumeWorkflow"] = "ResumeWorkflow"


class SkipJob(OperatorCommand):
    """Record ``job`` as skipped by an operator: dependents proceed as if it had succeeded with
    ``outputs``."""

    type: Literal["SkipJob"] = "SkipJob"
    job: str
    outputs: dict[str, str] = Field(default_factory=dict)


class RetryWorkflow(OperatorCommand):
    """Run a failed or cancelled workflow's failed and cancelled jobs again, and the jobs skipped
    because of them."""

    type: Literal["RetryWorkflow"] = "RetryWorkflow"


class RerunWorkflow(OperatorCommand):
    """Run an ended workflow's ``job`` and everything downstream of it again; the other jobs
    keep their results."""

    type: Literal["RerunWorkflow"] = "RerunWorkflow"
    job: str


class RestartWorkflow(OperatorCommand):
    """Record that an ended workflow runs again as a new run, ``restarted_as`` (its engine then
    starts that run with the same definition and inputs)."""

    type: Literal["RestartWorkflow"] = "RestartWorkflow"
    restarted_as: str


class SignalWorkflow(OperatorCommand):
    """Deliver signal ``name`` with ``data`` to the workflow (``actors.signals``). ``signal_id``:
    the sender's id, None to number it (a redelivery is then recorded again)."""

    type: Literal["SignalWorkflow"] = "SignalWorkflow"
    name: str
    data: dict[str, Any] = Field(default_factory=dict)
    signal_id: str | None = None


class HookWorkflow(OperatorCommand):
    """A webhook request reached the hook of ``job``'s wait ``attempt`` with ``body``."""

    type: Literal["HookWorkflow"] = "HookWorkflow"
    job: str
    attempt: int
    body: dict[str, Any] = Field(default_factory=dict)


class SetVariables(OperatorCommand):
    """Set workflow variables (``${{ vars.KEY }}``) for the jobs not yet queued."""

    type: Literal["SetVariables"] = "SetVariables"
    values: dict[str, Any]


class Advance(WorkflowCommand):
    """Internal reaction run after any event: what must follow from the workflow's state."""

    type: Literal["Advance"] = "Advance"


class AdmitWorkflow(WorkflowCommand):
    """Run ``run`` of the workflow was given a slot of its concurrency group (``actors.groups``)."""

    type: Literal["AdmitWorkflow"] = "AdmitWorkflow"
    run: int = Field(ge=0)


class TimeoutWorkflow(WorkflowCommand):
    """The workflow's durable timeout timer fired."""

    type: Literal["TimeoutWorkflow"] = "TimeoutWorkflow"


class ExpireLease(JobCommand):
    """Lease ``epoch`` ran out without a heartbeat: a lease kept by the log (the HTTP gateway's,
    whose expiry is a durable timer), not by a JetStream ack wait."""

    type: Literal["ExpireLease"] = "ExpireLease"
    epoch: int


# --- long-running jobs (a handler's InProgress) -------------------------------------------------


class ParkJob(JobCommand):
    """The holder of lease ``epoch`` returned ``InProgress``: look again ``callback_after``
    seconds from now, with ``outputs`` as the job's progress."""

    type: Literal["ParkJob"] = "ParkJob"
    epoch: int
    worker_id: str | None = None
    callback_after: float = Field(ge=0)
    outputs: dict[str, str] = Field(default_factory=dict)


class UnparkJob(JobCommand):
    """The callback timer of a parked attempt fired: queue it again (``poll_count`` names the
    parking it was armed for: a stale timer changes nothing)."""

    type: Literal["UnparkJob"] = "UnparkJob"
    attempt: int
    poll_count: int


AnyJobCommand = (
    ClaimJob
    | CompleteJob
    | FailJob
    | TimeoutJob
    | TimeoutDispatch
    | RequeueJob
    | CancelJob
    | ConfirmCancelled
    | ExpireLease
    | ParkJob
    | UnparkJob
)
AnyOperatorCommand = (
    PauseWorkflow
    | ResumeWorkflow
    | SkipJob
    | RetryWorkflow
    | RerunWorkflow
    | RestartWorkflow
    | SignalWorkflow
    | HookWorkflow
    | SetVariables
)
AnyWorkflowCommand = (
    StartWorkflow | CancelWorkflow | Advance | TimeoutWorkflow | AdmitWorkflow | AnyOperatorCommand
)
