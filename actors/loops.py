"""Loops, pure: a ``loop: {until, max_iterations}`` job runs again until ``until`` holds.

Iterations count from 1 (``${{ loop.iteration }}``). When an iteration succeeds, ``until`` is
evaluated over that iteration's ``outputs`` (and ``loop``, ``inputs``, ``env``):
- it holds: the job has succeeded, and its dependents go on with those outputs;
- it does not, below ``max_iterations``: ``JobLooped`` puts the job back to pending for the
  next iteration, which runs as new attempts (numbers go on counting, for fencing; the retry
  budget starts afresh). On a ``workflow:`` job each iteration is a new child run;
- it does not at ``max_iterations``: the job fails, saying so.

``advance`` runs first in every ``Advance``, so no dependent is ever judged on an iteration
that is not the last.

A fanned-out ``loop:`` job loops each instance on its own (``until`` also reads ``item`` or
``matrix``, and ``index``): a looped instance is pending again and the fan-out queues it again
(``actors.fanout``); the job fans in once every instance's loop has ended. Its instances are
looked at on every ``Advance`` while it runs, so such a fan-out is bounded (``LOOPED_INSTANCES``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, MutableMapping
from datetime import datetime
from typing import Any, Final

from actors import job
from actors.definitions import ExpressionContext, ExpressionError, evaluate
from actors.definitions._expr_runtime import truthy
from actors.fanout_state import instance_name
from actors.job import JobState
from actors.workflow_state import WorkflowState
from events.catalog import JobEvent, JobFailed, JobLooped, JobStatus
from events.definition import JobDefinition, WorkflowDefinition

__all__ = ["LOOPED_INSTANCES", "advance", "context_for"]

LOOPED_INSTANCES: Final = 1_000
"""At most this many instances in a fanned-out ``loop:`` job (each ``Advance`` looks at them)."""


def advance(
    state: WorkflowState,
    definition: WorkflowDefinition,
    jobs: MutableMapping[str, JobState],
    now: datetime,
) -> list[JobEvent]:
    """Loop or end each ``loop:`` job whose iteration has just succeeded; folds into ``jobs``."""
    if not definition.loop_jobs or state.cancel_requested:
        return []  # while cancelling, a finished iteration is the last
    decided: list[JobEvent] = []
    for name in definition.loop_jobs:
        if definition.jobs[name].fan_out is not None:
            decided += _instances(state, definition, definition.jobs[name], jobs, now)
            continue
        current = jobs[name]
        if current.status is not JobStatus.SUCCEEDED or current.skipped_by is not None:
            continue
        event = _after_iteration(state, definition, definition.jobs[name], current, now)
        if event is not None:
            jobs[name] = job.evolve(current, event)
            decided.append(event)
    return decided


def _instances(
    state: WorkflowState,
    definition: WorkflowDefinition,
    spec: JobDefinition,
    jobs: MutableMapping[str, JobState],
    now: datetime,
) -> list[JobEvent]:
    """Loop or end each instance of the running fan-out ``spec`` whose iteration succeeded."""
    assert spec.fan_out is not None
    fan = state.fanouts.get(spec.name)
    parent = jobs[spec.name]
    if fan is None or parent.status is not JobStatus.RUNNING or fan.attempt != parent.attempt:
        return []
    named = "matrix" if spec.fan_out.is_matrix else "item"
    decided: list[JobEvent] = []
    for index in range(fan.created):
        name = instance_name(spec.name, index)
        current = jobs.get(name)
        if current is None or current.status is not JobStatus.SUCCEEDED:
            continue
        if current.skipped_by is not None:
            continue
        own = {"index": index, named: fan.items[index]}
        event = _after_iteration(state, definition, spec, current, now, own)
        if event is not None:
            jobs[name] = job.evolve(current, event)
            decided.append(event)
    return decided


def _after_iteration(
    state: WorkflowState,
    definition: WorkflowDefinition,
    spec: JobDefinition,
    current: JobState,
    now: datetime,
    instance: Mapping[str, Any] | None = None,
) -> JobEvent | None:
    loop = spec.loop
    assert loop is not None
    context = ExpressionContext(
        needs={},
        inputs=state.inputs,
        env={**definition.env, **spec.env},
        loop={"iteration": current.iteration},
        outputs=dict(current.outputs),
        instance=instance or {},
    )
    try:
        done = truthy(evaluate(loop.until, context))
    except ExpressionError as error:
        return _fail(current, f"cannot evaluate loop.until: {error}", now)
    if done:
        return None
    if current.iteration >= loop.max_iterations:
        why = (
            f"loop reached max_iterations ({loop.max_iterations}) and until never held: "
            f"{loop.until}"
        )
        return _fail(current, why, now)
    return JobLooped(
        **current.ids, iteration=current.iteration + 1, attempt_base=current.attempt, at=now
    )


def _fail(current: JobState, error: str, now: datetime) -> JobFailed:
    return JobFailed(
        **current.ids,
        attempt=current.attempt,
        epoch=current.epoch,
        error=error,
        retryable=False,
        ended_at=now,
    )


def context_for(
    spec: JobDefinition, current: JobState, context: ExpressionContext
) -> ExpressionContext:
    """``context`` with ``loop.iteration`` for a ``loop:`` job (what its templates render with)."""
    if spec.loop is None:
        return context
    return dataclasses.replace(context, loop={"iteration": current.iteration})
