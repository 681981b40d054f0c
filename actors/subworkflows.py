"""Sub-workflows, pure: a ``workflow:`` job runs a child workflow of its own.

- A ready ``workflow:`` job records ``SubWorkflowStarted`` (its attempt, and the child's id,
  derived from parent id + job + attempt): the job runs, with no worker.
- The parent's engine sends the child's start command to the child's partition (``outbox``);
  the child's engine, when the child ends, sends ``ChildEndedRequest`` to the parent's.
- That notice settles the attempt (``settle``): the child's ``outputs`` become the job's; its
  failure fails the attempt, and the job's retry policy starts a new child run.
- Cancelling the parent's job cancels the child (``outbox`` again); the child's end then
  confirms the job's cancellation.

``outbox`` is computed from the state after every reaction and sent again each time: every
command has a derived message id (de-duplicated by the stream) and is idempotent where it lands,
so an engine that dies between an append and its send loses nothing: the message that caused
the append is delivered again, and the next reaction sends what the state still asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from actors import dag, job
from actors._child_runs import child_id
from actors.commands import FailJob
from actors.definitions import ExpressionContext, render, validate_inputs
from actors.definitions.mapping import definition_mapping
from actors.fanout_state import ACTIVE as _ACTIVE
from actors.fanout_state import instance_name
from actors.job import JobState
from actors.workflow_state import WorkflowState
from events.base import Event
from events.catalog import (
    JobCancelled,
    JobEvent,
    JobFailed,
    JobSpec,
    JobStatus,
    JobSucceeded,
    ParentLink,
    SubWorkflowStarted,
    WorkflowStatus,
)
from events.definition import JobDefinition, WorkflowDefinition
from events.errors import InvalidWorkflow
from events.requests import (
    AnyRequest,
    CancelRequest,
    ChildEndedRequest,
    StartRequest,
    request_msg_id,
)

__all__ = ["child_id", "outbox", "outbox_msg_id", "render_outputs", "settle", "start"]

MAX_DEPTH = 5
"""How deeply sub-workflows may nest (a parent with a child is depth 1)."""


def start(
    current: JobState,
    spec: JobDefinition,
    rendered: JobSpec,
    definition: WorkflowDefinition,
    now: datetime,
) -> list[JobEvent]:
    """The first attempt (of an iteration) of a ready ``workflow:`` job: its child starts, or
    the job fails when the child would refuse its inputs."""
    assert spec.workflow is not None
    child = definition.workflows.get(spec.workflow)
    ids = current.ids
    if child is None:  # validation refuses this; a hand-made start request might not
        error = f"sub-workflow {spec.workflow!r} is not embedded in the definition"
        return [_failed(current, error, now)]
    try:
        validate_inputs(child, rendered.with_)
    except InvalidWorkflow as error:
        return [_failed(current, f"the sub-workflow refuses its inputs: {error}", now)]
    attempt = current.attempt + 1
    return [
        SubWorkflowStarted(
            **ids,
            attempt=attempt,
            child_id=child_id(current.workflow_id, current.job, attempt),
            spec=rendered.model_copy(update={"workflow": spec.workflow}),
            retry=spec.retry,
            on_failure=spec.on_failure,
            attempt_base=current.attempt_base,
            started_at=now,
        )
    ]


def _failed(current: JobState, error: str, now: datetime) -> JobFailed:
    return JobFailed(**current.ids, attempt=0, epoch=0, error=error, retryable=False, ended_at=now)


def settle(state: WorkflowState, notice: ChildEndedRequest, now: datetime) -> list[Event]:
    """What the end of a child run means for its parent's job; [] for a stale or repeated one."""
    current = state.jobs.get(notice.job)
    if (
        current is None
        or current.status is not JobStatus.RUNNING
        or current.child_id != notice.child_id
        or current.attempt != notice.attempt
    ):
        return []
    ids = current.ids
    if notice.status == "succeeded":
        return [
            JobSucceeded(
                **ids,
                attempt=current.attempt,
                epoch=current.epoch,
                worker_id=notice.child_id,
                outputs=notice.outputs,
                ended_at=now,
            )
        ]
    if notice.status == "cancelled" and current.cancel_requested:
        reason = current.cancel_reason or "cancelled"
        return [JobCancelled(**ids, reason=reason, worker_id=notice.child_id, at=now)]
    why = f": {notice.reason}" if notice.reason else ""
    error = f"sub-workflow {notice.child_id} {notice.status}{why}"
    fail = FailJob(**ids, epoch=current.epoch, worker_id=notice.child_id, error=error, now=now)
    return list(job.decide(current, fail))


def outbox(state: WorkflowState) -> list[AnyRequest]:
    """The commands ``state`` asks to be sent (again): each running child's start (and its
    cancel, once the job is asked to stop), and this workflow's end to its parent."""
    definition = state.definition
    if definition is None:
        return []
    sent: list[AnyRequest] = []
    for current in _running_children(state, definition):
        sent.append(_child_start(state, definition, current))
        if current.cancel_requested:
            reason = f"its parent {state.workflow_id} was cancelled: {current.cancel_reason}"
            sent.append(
                CancelRequest(
                    workflow_id=current.child_id, reason=reason, force=state.cancel_forced
                )
            )
    if state.parent is not None and state.status is not None and state.status.is_terminal:
        sent.append(_end_notice(state, state.parent))
    return sent


def _running_children(state: WorkflowState, definition: WorkflowDefinition) -> list[JobState]:
    """The jobs (fan-out instances included) whose child runs now."""
    running: list[JobState] = []
    for name in definition.workflow_jobs:
        fan = state.fanouts.get(name)
        if fan is None:
            current = state.job(name)
            if current.status is JobStatus.RUNNING and current.child_id is not None:
                running.append(current)
            continue
        # Instances start in order and the active ones are mostly the latest: look back from
        # the last one started until every active instance is found.
        found: list[JobState] = []
        for index in range(fan.created - 1, -1, -1):
            if len(found) == fan.active:
                break
            instance = state.jobs.get(instance_name(name, index))
            if instance is not None and instance.status in _ACTIVE:
                found.append(instance)
        running += [
            instance
            for instance in reversed(found)  # (in item order)
            if instance.status is JobStatus.RUNNING and instance.child_id is not None
        ]
    return running


def outbox_msg_id(command: AnyRequest) -> str:
    """The message id an outbox command is sent with: derived from what it says, so that sending
    it again is de-duplicated (a forced cancel apart from a plain one, as the client does)."""
    forced = isinstance(command, CancelRequest) and command.force
    return request_msg_id(command) + (".force" if forced else "")


def _child_start(
    state: WorkflowState, definition: WorkflowDefinition, current: JobState
) -> StartRequest:
    assert current.child_id is not None and current.spec.workflow is not None
    child = definition.workflows[current.spec.workflow]
    return StartRequest(
        workflow_id=current.child_id,
        definition=definition_mapping(child),
        inputs=dict(current.spec.with_),
        parent=ParentLink(workflow_id=state.workflow_id, job=current.job, attempt=current.attempt),
        traceparent=state.traceparent,  # the child's spans join the parent's trace
    )


def _end_notice(state: WorkflowState, parent: ParentLink) -> ChildEndedRequest:
    status = state.status
    assert status is not None
    names = {
        WorkflowStatus.SUCCEEDED: "succeeded",
        WorkflowStatus.FAILED: "failed",
        WorkflowStatus.CANCELLED: "cancelled",
    }
    return ChildEndedRequest(
        workflow_id=parent.workflow_id,
        job=parent.job,
        attempt=parent.attempt,
        child_id=state.workflow_id,
        status=names[status],
        reason=state.end_reason,
        outputs=dict(state.outputs),
    )


def render_outputs(
    definition: WorkflowDefinition, jobs: Mapping[str, JobState], inputs: Mapping[str, Any]
) -> dict[str, str]:
    """The workflow's ``outputs`` rendered over its jobs' results; raises ``ValueError``."""
    if not definition.outputs:
        return {}
    needs = {
        name: {
            "result": "success" if state.succeeded else dag.RESULT_NAMES.get(state.status, ""),
            "outputs": dict(state.outputs),
        }
        for name, state in jobs.items()
    }
    context = ExpressionContext(needs=needs, inputs=inputs, env=dict(definition.env))
    return {name: render(template, context) for name, template in definition.outputs.items()}
