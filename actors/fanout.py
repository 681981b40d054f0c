"""Fan-out decisions, pure: a matrix or ``for_each`` job run as one instance per item.

When a fanned-out job becomes ready, ``start`` records its items (``JobFannedOut``: the
``for_each`` list is evaluated then, once, and kept in the log, so a restarted engine finds the
same instances). While it runs, ``advance`` queues instances ``<job>-<index>`` in item order, at
most ``max_parallel`` at a time; stops them after a failure under ``fail_fast`` or when the
workflow is cancelled; and once they have all ended records the job's result
(``JobFannedIn``): ``needs.<job>.outputs.<key>`` is a JSON list of the instances' values in item
order, and the job failed if an instance failed (unless ``on_failure: continue``).

A fanned-out ``workflow:`` job runs one child workflow per instance (``subworkflows.start`` on
the instance: ``SubWorkflowStarted`` instead of ``JobQueued``), its ``with`` rendered with the
instance's item; the child's outputs are the instance's. At most ``max_parallel`` children run at
once, ``CHILDREN_AT_ONCE`` when it is not set: the parent re-sends every running child's start
with each of its reactions (``subworkflows.outbox``), so that cost is bounded too. A fanned-out
``wait_for`` job has each instance wait (``JobWaiting``) for the signal its rendered name gives
(``approve-${{ item }}``), or for a request to its own webhook URL. A fanned-out ``loop:`` job
has each instance loop on its own (``loops`` decides ``JobLooped`` on the instance; it is queued
again here, before instances not started yet, with ``loop.iteration`` rendered).

Each decision reads the tally in ``WorkflowState.fanouts`` and touches only the instances it
queues or stops: a fan-out of 10,000 costs no more per event than one of 10.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from actors import dag, job, loops, signals, subworkflows
from actors.commands import CancelJob
from actors.definitions import ExpressionContext, evaluate
from actors.definitions._fields import describe, short
from actors.fanout_state import FanOutState, instance_name, next_instances
from actors.job import JobState
from actors.workflow_state import WorkflowState
from events.catalog import (
    JobCancelled,
    JobEvent,
    JobFailed,
    JobFannedIn,
    JobFannedOut,
    JobQueued,
    JobReopened,
    JobStatus,
)
from events.definition import FanOut, JobDefinition, OnFailure, WorkflowDefinition

__all__ = ["CHILDREN_AT_ONCE", "MAX_INSTANCES", "advance", "parallel_limit", "start", "stop"]

MAX_INSTANCES: Final = 100_000
CHILDREN_AT_ONCE: Final = 20
"""How many children a fanned-out ``workflow:`` job runs at once without ``max_parallel``."""
_NAMED_FAILURES: Final = 5
_FAIL_FAST: Final = "fail_fast: another instance failed"


def start(
    current: JobState,
    spec: JobDefinition,
    context: ExpressionContext,
    jobs: Mapping[str, JobState],
    now: datetime,
) -> list[JobEvent]:
    """The ready job fans out over its items (or fails, located, when they are no list).

    Fanned out before (an operator's retry or rerun reopened it): the instances of that run are
    reopened first, each on its own actor, so that each job actor's history says it runs again.
    """
    fan = spec.fan_out
    assert fan is not None
    try:
        items = _items(fan, context)
        if spec.loop is not None and len(items) > loops.LOOPED_INSTANCES:
            raise ValueError(
                f"{len(items)} items; a fan-out with loop: runs at most "
                f"{loops.LOOPED_INSTANCES} instances"
            )
    except ValueError as error:
        error_text = f"jobs.{current.job}.for_each: {error}"
        return [_failed_before_queued(current, error_text, now)]
    attempt = current.attempt + 1
    events: list[JobEvent] = [
        JobReopened(**instance.ids, by="fan-out", at=now)
        for instance in _earlier_instances(current.job, jobs)
    ]
    events.append(JobFannedOut(**current.ids, attempt=attempt, items=items, at=now))
    if not items:  # nothing to run: done at once
        events.append(JobFannedIn(**current.ids, attempt=attempt, succeeded=True, ended_at=now))
    return events


def _earlier_instances(name: str, jobs: Mapping[str, JobState]) -> list[JobState]:
    # Instances start in order, but one an operator skipped before its turn may lie beyond the
    # first never started: look at every job once (a re-fan-out is an operator's rare retry).
    prefix = f"{name}-"
    found = [
        (int(key[len(prefix) :]), instance)
        for key, instance in jobs.items()
        if key.startswith(prefix)
        and key[len(prefix) :].isdigit()
        and instance.status is not JobStatus.PENDING
    ]
    return [instance for _, instance in sorted(found, key=lambda pair: pair[0])]


def _items(fan: FanOut, context: ExpressionContext) -> list[Any]:
    if fan.items is not None:
        return list(fan.items)
    assert fan.for_each is not None
    value = evaluate(fan.for_each, context)
    if isinstance(value, str):  # a job output is text: read it as JSON
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"expected a JSON list of items, got text {short(value)}") from None
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON list of items, got {describe(value)}")
    if len(value) > MAX_INSTANCES:
        raise ValueError(f"{len(value)} items; at most {MAX_INSTANCES} instances")
    return value


def advance(
    state: WorkflowState,
    definition: WorkflowDefinition,
    spec: JobDefinition,
    current: JobState,
    jobs: Mapping[str, JobState],
    now: datetime,
) -> list[JobEvent]:
    """What the running fan-out ``current`` does next: queue, stop, or end."""
    fan = state.fanouts.get(current.job)
    assert spec.fan_out is not None
    if fan is None or fan.attempt != current.attempt:
        return []  # its JobFannedOut is not folded yet
    looped = spec.loop is not None
    why_stop = _stop_reason(state, definition, spec, jobs, fan)
    if why_stop is not None:
        stopping = _stop_instances(state, current.job, fan, jobs, why_stop, now, looped=looped)
        if stopping or fan.active:
            return stopping
        return [_ended(current, spec, fan, jobs, why_stop, now)]
    # A loop's instances pending again (``loops``: their next iteration) go first.
    again = _looped_again(current.job, fan, jobs) if looped else []
    if fan.ended == fan.count and not again:
        return [_ended(current, spec, fan, jobs, None, now)]
    room = fan.count - fan.created + len(again)
    limit = parallel_limit(spec)
    if limit is not None:
        room = min(room, limit - fan.active)
    if room <= 0:
        return []
    verdict = dag.judge(
        spec, jobs, definition=definition, inputs=state.inputs, cancelled=state.cancel_requested
    )
    if verdict.context is None:
        return []  # its upstream does not change once it ran: not reached
    indexes = again[:room]
    indexes += next_instances(current.job, fan, jobs, room - len(indexes))
    return [
        _queue(state, definition, spec, index, fan.items[index], verdict.context, jobs, now)
        for index in indexes
    ]


def _looped_again(name: str, fan: FanOutState, jobs: Mapping[str, JobState]) -> list[int]:
    """The instances of a ``loop:`` fan-out pending for their next iteration."""
    found: list[int] = []
    for index in range(fan.created):
        instance = jobs.get(instance_name(name, index))
        if instance is not None and instance.status is JobStatus.PENDING and instance.iteration > 1:
            found.append(index)
    return found


def parallel_limit(spec: JobDefinition) -> int | None:
    """How many instances of ``spec`` may be active at once (None: no limit)."""
    assert spec.fan_out is not None
    if spec.fan_out.max_parallel is not None:
        return spec.fan_out.max_parallel
    return CHILDREN_AT_ONCE if spec.workflow is not None else None


def stop(state: WorkflowState, name: str, reason: str, now: datetime) -> list[JobEvent]:
    """The workflow ended: withdraw or stop every instance still going, and end the job."""
    fan = state.fanouts[name]
    current = state.job(name)
    looped = state.definition is not None and state.definition.jobs[name].loop is not None
    events = _stop_instances(state, name, fan, state.jobs, reason, now, looped=looped)
    return [*events, JobCancelled(**current.ids, reason=reason, at=now)]


def _stop_reason(
    state: WorkflowState,
    definition: WorkflowDefinition,
    spec: JobDefinition,
    jobs: Mapping[str, JobState],
    fan: FanOutState,
) -> str | None:
    assert spec.fan_out is not None
    if state.cancel_forced:
        return state.cancel_reason or "cancelled"
    if state.cancel_requested:
        # As for any job: one whose condition holds under cancellation (always()) goes on.
        verdict = dag.judge(spec, jobs, definition=definition, inputs=state.inputs, cancelled=True)
        if verdict.verdict is not dag.Verdict.RUN:
            return state.cancel_reason or "the workflow was cancelled"
    if fan.failed and spec.fan_out.fail_fast and spec.on_failure is not OnFailure.CONTINUE:
        return _FAIL_FAST
    return None


def _stop_instances(
    state: WorkflowState,
    name: str,
    fan: FanOutState,
    jobs: Mapping[str, JobState],
    reason: str,
    now: datetime,
    *,
    looped: bool = False,
) -> list[JobEvent]:
    if not fan.active and not looped:  # (a loop's instance may be pending between iterations)
        return []
    events: list[JobEvent] = []
    for index in range(fan.created):
        instance = jobs.get(instance_name(name, index))
        if instance is None or instance.status.is_terminal or instance.cancel_requested:
            continue
        events += job.decide(instance, CancelJob(**instance.ids, reason=reason, now=now))
    return events


def _queue(
    state: WorkflowState,
    definition: WorkflowDefinition,
    spec: JobDefinition,
    index: int,
    item: Any,
    context: ExpressionContext,
    jobs: Mapping[str, JobState],
    now: datetime,
) -> JobEvent:
    assert spec.fan_out is not None
    name = instance_name(spec.name, index)
    instance = jobs.get(name) or state.job(name)  # (a loop's: looped in this very Advance)
    own = {"index": index, ("matrix" if spec.fan_out.is_matrix else "item"): item}
    own_context = loops.context_for(spec, instance, dataclasses.replace(context, instance=own))
    try:
        rendered = dag.render_spec(spec, own_context, jobs, workflow_priority=definition.priority)
    except ValueError as error:
        return _failed_before_queued(instance, f"cannot render the job: {error}", now)
    if spec.workflow is not None:  # its child starts (or it fails: inputs the child refuses)
        [started] = subworkflows.start(instance, spec, rendered, definition, now)
        return started
    if spec.wait_for is not None:  # it waits for its own signal (or its own webhook request)
        try:
            return signals.waiting(instance, spec, own_context, now)
        except ValueError as error:
            return _failed_before_queued(instance, f"cannot render the job: {error}", now)
    return JobQueued(
        **instance.ids,
        attempt=instance.attempt + 1,
        prior_epoch=instance.epoch,
        spec=rendered,
        retry=spec.retry,
        on_failure=spec.on_failure,
        queued_at=now,
        not_before=dag.not_before(spec, now),
        dispatch_timeout=spec.dispatch_timeout or definition.dispatch_timeout,
        attempt_base=instance.attempt_base if spec.loop is not None else 0,
    )


def _ended(
    current: JobState,
    spec: JobDefinition,
    fan: FanOutState,
    jobs: Mapping[str, JobState],
    why_stop: str | None,
    now: datetime,
) -> JobEvent:
    instances = [
        jobs.get(name) or job.pending(current.workflow_id, name)
        for name in (instance_name(current.job, index) for index in range(fan.count))
    ]
    outputs = _gathered(instances)
    failed = [i.job for i in instances if i.status is JobStatus.FAILED]
    if why_stop is not None and why_stop != _FAIL_FAST:
        return JobCancelled(**current.ids, reason=why_stop, at=now)
    if failed and spec.on_failure is not OnFailure.CONTINUE:
        named = ", ".join(failed[:_NAMED_FAILURES]) + (
            ", ..." if len(failed) > _NAMED_FAILURES else ""
        )
        error = f"{len(failed)} of {fan.count} instances failed: {named}"
        not_started = sum(i.status is JobStatus.PENDING for i in instances)
        if not_started:  # (one skipped by an operator before its turn was not started either)
            error += f"; {not_started} not started (fail_fast)"
        return JobFannedIn(
            **current.ids,
            attempt=current.attempt,
            succeeded=False,
            outputs=outputs,
            error=error,
            ended_at=now,
        )
    return JobFannedIn(
        **current.ids, attempt=current.attempt, succeeded=True, outputs=outputs, ended_at=now
    )


def _gathered(instances: list[JobState]) -> dict[str, str]:
    keys: dict[str, None] = {}
    for instance in instances:
        keys.update(dict.fromkeys(instance.outputs))
    return {
        key: json.dumps([i.outputs.get(key) for i in instances], separators=(",", ":"))
        for key in keys
    }


def _failed_before_queued(current: JobState, error: str, now: datetime) -> JobFailed:
    return JobFailed(**current.ids, attempt=0, epoch=0, error=error, retryable=False, ended_at=now)
