"""DAG semantics, pure: the order of jobs, whether a pending job runs, and what it runs.

``judge`` decides one job from the results of its upstream jobs:

- it waits until every upstream job (``needs`` and ``needs_any``) is terminal, so that its
  condition, ``failure()`` and ``upstream_outputs`` always see final results;
- ``needs``: all must have succeeded; ``needs_any``: at least one succeeded (a skipped or failed
  member does not block the others); ``needs_at_least``: ``count`` of its jobs succeeded, judged
  as soon as that is reached or lost (``actors.quorum``);
- the condition defaults to ``success()``; one that calls no status function is implicitly
  ``success() && (...)``; ``failure()`` is true when any *ancestor* failed (as in GitHub, so a
  job after a skipped chain still sees the failure that caused it); ``cancelled()`` is true once
  the workflow's cancellation was requested;
- a job that does not run is ``skipped``, or ``cancelled`` when the workflow is being cancelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from actors import quorum
from actors.definitions import (
    ExpressionContext,
    evaluate_condition,
    render,
    uses_status_function,
)
from actors.definitions.http_step import render_http
from events import priority, subjects
from events.catalog import JobSpec, JobStatus
from events.definition import Concurrency, JobDefinition, WorkflowDefinition
from events.errors import InvalidWorkflow
from events.http_step import HTTP_HANDLER

# How ``needs.<job>.result`` spells each terminal status (GitHub's vocabulary).
RESULT_NAMES = {
    JobStatus.SUCCEEDED: "success",
    JobStatus.FAILED: "failure",
    JobStatus.SKIPPED: "skipped",
    JobStatus.CANCELLED: "cancelled",
}


class Upstream(Protocol):
    """What ``judge`` reads about another job (``actors.job.JobState`` provides it)."""

    @property
    def status(self) -> JobStatus: ...

    @property
    def outputs(self) -> Mapping[str, str]: ...

    @property
    def succeeded(self) -> bool:
        """Succeeded, or skipped by an operator (who vouched for its outputs)."""
        ...


class Verdict(StrEnum):
    WAIT = "wait"
    RUN = "run"
    SKIP = "skip"
    CANCEL = "cancel"
    ERROR = "error"  # the condition cannot be evaluated: the job fails without running


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    reason: str = ""
    context: ExpressionContext | None = None  # set for RUN: what templates render with


WAIT = Judgement(Verdict.WAIT)


def topological_order(definition: WorkflowDefinition) -> tuple[str, ...]:
    """Jobs ordered so that each comes after its upstream; raises ``InvalidWorkflow``.

    Definitions are validated before they are started; this re-checks the little that would
    otherwise make a workflow hang or misroute (unknown upstream, cycles, unusable names).
    """
    jobs = definition.jobs
    problems = [
        f"jobs.{name}: {error}" for name in jobs if (error := _name_problem(name)) is not None
    ]
    problems += [
        f"jobs.{name}.needs: unknown job {up!r}"
        for name, job in jobs.items()
        for up in job.upstream
        if up not in jobs
    ]
    if problems:
        raise InvalidWorkflow(problems)
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = placed
    for name in sorted(jobs):
        _visit(name, jobs, state, order, [])
    return tuple(order)


def _name_problem(name: str) -> str | None:
    try:
        subjects.require_token(name, what="job name")
    except ValueError as error:
        return str(error)
    return None


def _visit(
    name: str,
    jobs: Mapping[str, JobDefinition],
    state: dict[str, int],
    order: list[str],
    path: list[str],
) -> None:
    if state.get(name) == 2:
        return
    if state.get(name) == 1:
        cycle = [*path[path.index(name) :], name]
        raise InvalidWorkflow([f"jobs.{name}.needs: cycle {' -> '.join(cycle)}"])
    state[name] = 1
    for up in jobs[name].upstream:
        _visit(up, jobs, state, order, [*path, name])
    state[name] = 2
    order.append(name)


def judge(
    job: JobDefinition,
    jobs: Mapping[str, Upstream],
    *,
    definition: WorkflowDefinition,
    inputs: Mapping[str, Any],
    cancelled: bool,
    vars: Mapping[str, Any] | None = None,
) -> Judgement:
    """What happens to the pending ``job`` given the states of all ``jobs``."""
    try:
        status_aware = job.if_ is not None and uses_status_function(job.if_)
    except ValueError as error:
        return Judgement(Verdict.ERROR, f"cannot read condition: {error}")
    if cancelled and not status_aware:
        return Judgement(Verdict.CANCEL, "the workflow was cancelled")
    if job.needs_at_least is None and not all(
        jobs[name].status.is_terminal for name in reversed(job.upstream)
    ):
        # Not settled (``quorum.settled``), found without building the upstream map: a
        # fan-in's job waits for a thousand, asked after each end; from the last listed, the
        # likeliest to be still open, one look is usually enough.
        return WAIT
    upstream = {name: jobs[name] for name in job.upstream}
    if not quorum.settled(job, upstream):
        return WAIT
    deps_ok = _dependencies_met(job, upstream)
    context = ExpressionContext(
        needs={name: needs_entry(up) for name, up in upstream.items()},
        inputs=inputs,
        vars=definition.vars if vars is None else vars,
        env={**definition.env, **job.env},
        success=deps_ok and not cancelled,
        # Only a status-aware condition can call failure(); spare the walk up the graph.
        failure=status_aware and _ancestor_failed(job, definition, jobs),
        cancelled=cancelled,
    )
    try:
        runs = evaluate_condition(job.if_, context)
    except ValueError as error:
        return Judgement(Verdict.ERROR, f"cannot evaluate condition: {error}")
    if runs:
        return Judgement(Verdict.RUN, context=context)
    if cancelled:
        return Judgement(Verdict.CANCEL, "the workflow was cancelled")
    if not deps_ok:
        return Judgement(Verdict.SKIP, _unmet_reason(job, upstream))
    return Judgement(Verdict.SKIP, f"condition is false: {job.if_}")


def _dependencies_met(job: JobDefinition, upstream: Mapping[str, Upstream]) -> bool:
    if any(not upstream[name].succeeded for name in job.needs):
        return False
    if not quorum.met(job, upstream):
        return False
    return not job.needs_any or any(upstream[name].succeeded for name in job.needs_any)


def _unmet_reason(job: JobDefinition, upstream: Mapping[str, Upstream]) -> str:
    for name in job.needs:
        if not upstream[name].succeeded:
            return f"needs {name}, which {upstream[name].status}"
    if not quorum.met(job, upstream):
        return quorum.unmet_reason(job, upstream)
    return f"none of {', '.join(job.needs_any)} succeeded"


def needs_entry(up: Upstream) -> dict[str, Any]:
    # An operator's skip reads as the success it stands in for.
    result = "success" if up.succeeded else RESULT_NAMES.get(up.status, str(up.status))
    return {"result": result, "outputs": dict(up.outputs)}


def _ancestor_failed(
    job: JobDefinition, definition: WorkflowDefinition, jobs: Mapping[str, Upstream]
) -> bool:
    seen: set[str] = set()
    todo = list(job.upstream)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if jobs[name].status is JobStatus.FAILED:
            return True
        todo.extend(definition.jobs[name].upstream)
    return False


def render_spec(
    job: JobDefinition,
    context: ExpressionContext,
    jobs: Mapping[str, Upstream],
    *,
    workflow_priority: int | None = None,
) -> JobSpec:
    """The job's spec with ``${{ }}`` rendered in ``run``, ``env``, ``with`` and ``labels``;
    its priority is its own, else ``workflow_priority``.

    Raises ``ValueError`` (``ExpressionError``) when a template cannot be evaluated.
    """
    return JobSpec(
        run=_render(job.run, context) if job.run is not None else None,
        uses=HTTP_HANDLER if job.http is not None else job.uses,
        with_=_render_value(job.with_, context),
        env={key: _render(value, context) for key, value in context.env.items()},
        labels=_render_labels(job.labels, context),
        timeout=job.timeout,
        upstream_outputs={name: dict(jobs[name].outputs) for name in job.upstream},
        rate_limit=job.rate_limit,
        concurrency=_rendered_group(job.concurrency, context),
        http=render_http(job.http, context) if job.http is not None else None,
        priority=priority.effective(job.priority, workflow_priority),
    )


def _rendered_group(group: Concurrency | None, context: ExpressionContext) -> Concurrency | None:
    """The group with its name rendered; ``ValueError`` for a name that is not a token (it keys
    the group's slots: letters, digits, ``_`` and ``-``)."""
    if group is None or "${{" not in group.group:
        return group
    name = _render(group.group, context)
    if not subjects.is_valid_token(name):
        raise ValueError(
            f"the concurrency group renders to {name[:80]!r}: use letters, digits, _ and -"
        )
    return group.model_copy(update={"group": name})


def _render(template: str, context: ExpressionContext) -> str:
    # Most values hold no template: skip the expression machinery for them.
    return render(template, context) if "${{" in template else template


def _render_labels(labels: tuple[str, ...], context: ExpressionContext) -> tuple[str, ...]:
    if not any("${{" in label for label in labels):
        return labels
    rendered = tuple(_render(label, context) for label in labels)
    for label in rendered:
        if not subjects.is_valid_token(label):
            raise ValueError(f"label {label!r} is not a valid name (letters, digits, '_', '-')")
    return rendered


def _render_value(value: Any, context: ExpressionContext) -> Any:
    if isinstance(value, str):
        return _render(value, context)
    if isinstance(value, Mapping):
        return {key: _render_value(item, context) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_render_value(item, context) for item in value]
    return value


def not_before(job: JobDefinition, now: datetime) -> datetime | None:
    """When a job that became ready at ``now`` may be claimed: after ``delay`` and ``at``."""
    moments = []
    if job.at is not None:
        # A naive ``at`` is taken as UTC rather than failing to compare with an aware clock.
        moments.append(job.at if job.at.tzinfo is not None else job.at.replace(tzinfo=UTC))
    if job.delay:
        moments.append(now + timedelta(seconds=job.delay))
    return max(moments) if moments else None
