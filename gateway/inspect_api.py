"""Reads the web UI needs beyond the status object, built like the rest of the client API on the
log (``Client.history``) and the projections (``Client.list``, ``Client.workers``):

- a workflow's **graph**: every job with its edges (``needs``, ``needs_any``) and its view, plus
  the stream sequence the view was folded to, so a client follows ``/api/events`` from there
  (``Last-Event-ID``) with no gap and no replay;
- one **job**: its definition, rendered command, and every claim (epoch, attempt, worker, how it
  ended), the rejected late results too; a fan-out's instance ``<job>-<index>`` as any job (and
  whose instance it is), a fanned-out job with its instances (``gateway.instances``);
- **queued label sets**: the jobs queued right now grouped by what a worker must offer to run
  them, with the live workers that serve each (none: the jobs wait for a worker that may never
  come).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from actors import groups, workflow
from actors.fanout_state import job_names
from actors.workflow import WorkflowState
from events import namespaces
from events.base import RecordedEvent
from events.catalog import (
    JobCancelled,
    JobEvent,
    JobFailed,
    JobQueued,
    JobResultRejected,
    JobStarted,
    JobStatus,
    JobSucceeded,
    with_implied_starts,
)
from events.definition import AtLeast
from events.dispatch import capabilities, requirement_set, serves
from gateway.context import context
from gateway.instances import (
    InstanceOf,
    InstanceRow,
    LogLinks,
    instance_of,
    instance_rows,
    instance_views,
    log_links,
)
from gateway.web import Json
from projections.views import JobView, job_view
from sdk.errors import JobNotFound

MAX_SCANNED: Final = 200
"""Running workflows with queued jobs that ``/api/label-sets`` looks into (the newest)."""
MAX_LISTED: Final = 1000
"""Running workflows (the newest) whose job counts it looks at."""
_SCAN_CONCURRENCY: Final = 8
_SAMPLE: Final = 5


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


class GraphJob(_Out):
    name: str
    needs: list[str] = Field(description="edges: every one must have succeeded")
    needs_any: list[str] = Field(description="edges: one of them is enough")
    labels: list[str]
    uses: str | None = None
    run: str | None = Field(default=None, description="the job's `run:` as written")
    if_: str | None = Field(default=None, alias="if")
    view: JobView = Field(description="the job in the status object")
    needs_at_least: AtLeast | None = Field(
        default=None, description="edges: `count` of the jobs `of` are enough (an n-of-m join)"
    )
    instances: list[dict[str, Any]] | None = Field(
        default=None,
        description="a fanned-out job (matrix, for_each): its instances' views in item order "
        "(instance i is `<name>-<i>`), their empty fields left out; null before it fans out",
    )


class GraphOut(_Out):
    workflow_id: str
    name: str
    status: str
    reason: str | None = Field(
        default=None,
        description="as the status object's: why it ended, who paused it, or what it waits for",
    )
    started_at: datetime | None = None
    ended_at: datetime | None = None
    inputs: dict[str, Any] = Field(description="the inputs, defaults applied")
    idempotency_key: str | None = None
    seq: int = Field(description="stream sequence of the last event folded: resume events here")
    jobs: list[GraphJob] = Field(description="in topological order")
    outputs: dict[str, str] = Field(
        default_factory=dict, description="the workflow's result, once it succeeded"
    )
    group: str | None = Field(
        default=None, description="its workflow concurrency group (rendered), once queued"
    )
    namespace: str = Field(default="default", description="the namespace it runs in")


class ClaimRecord(_Out):
    attempt: int
    epoch: int = Field(description="the claim's fencing token")
    worker_id: str
    started_at: datetime
    lease_ttl: float
    outcome: str = Field(
        description="running, succeeded, failed, cancelled, or lost (its lease ran out and "
        "another claim took the attempt over)"
    )
    ended_at: datetime | None = None
    error: str | None = None


class RejectedRecord(_Out):
    attempt: int
    epoch: int
    worker_id: str | None = None
    outcome: str
    reason: str
    at: datetime


class JobDetailOut(_Out):
    workflow_id: str
    job: str
    needs: list[str]
    needs_any: list[str]
    labels: list[str]
    uses: str | None = None
    run: str | None = None
    if_: str | None = Field(default=None, alias="if")
    command: str | None = Field(description="the last attempt's rendered command")
    view: JobView
    claims: list[ClaimRecord]
    rejected: list[RejectedRecord]
    logs: LogLinks
    instance_of: InstanceOf | None = Field(
        default=None, description="an instance `<job>-<index>`: its fanned-out job and item"
    )
    instances: list[InstanceRow] | None = Field(
        default=None, description="a fanned-out job: its instances in item order"
    )
    instance_counts: dict[str, int] | None = Field(
        default=None, description="a fanned-out job: its instances by status"
    )


class QueuedLabelSet(_Out):
    requirements: list[str] = Field(description="labels, plus @<handler> for a `uses:` job")
    queued: int
    workflows: list[str] = Field(description="a few of the workflows whose jobs wait here")
    workers: list[str] = Field(description="live workers serving it (empty: nobody does)")


class LabelSetsOut(_Out):
    label_sets: list[QueuedLabelSet]
    workflows_scanned: int
    complete: bool = Field(
        description="false: it looked at the newest running workflows only (docs/http.md)"
    )


async def _state(request: Request) -> tuple[WorkflowState, list[RecordedEvent]]:
    workflow_id = request.path_params["workflow_id"]
    history = await context(request).client.history(workflow_id)
    return workflow.replay(history, WorkflowState(workflow_id=workflow_id)), history


async def graph(request: Request) -> Response:
    state, history = await _state(request)
    assert state.definition is not None and state.status is not None  # history is not empty
    jobs = []
    for name in state.order:
        spec = state.definition.jobs[name]
        jobs.append(
            GraphJob(
                name=name,
                needs=list(spec.needs),
                needs_any=list(spec.needs_any),
                labels=list(spec.labels),
                uses=spec.uses,
                run=spec.run,
                if_=spec.if_,
                view=job_view(state.job(name)),
                needs_at_least=spec.needs_at_least,
                instances=instance_views(state, name),
            )
        )
    out = GraphOut(
        workflow_id=state.workflow_id,
        name=state.definition.name,
        status=state.status.value,
        reason=state.end_reason or state.pause_note or groups.queue_note(state),
        started_at=state.started_at,
        ended_at=state.ended_at,
        inputs=dict(state.inputs),
        idempotency_key=state.idempotency_key,
        seq=history[-1].seq,
        jobs=jobs,
        outputs=dict(state.outputs),
        group=state.group,
        namespace=namespaces.shown(state.namespace),
    )
    return Json(out.model_dump(mode="json", by_alias=True))


async def job_detail(request: Request) -> Response:
    state, history = await _state(request)
    assert state.definition is not None
    name = request.path_params["job"]
    parent = instance_of(state, name)
    if name not in state.definition.jobs and parent is None:
        raise JobNotFound(state.workflow_id, name, state.definition.jobs)
    spec = state.definition.jobs[parent.job if parent is not None else name]
    events = [r.event for r in history if isinstance(r.event, JobEvent) and r.event.job == name]
    claims, rejected = claims_of(events)
    job = state.job(name)
    rows = instance_rows(state, name)
    out = JobDetailOut(
        workflow_id=state.workflow_id,
        job=name,
        needs=list(spec.needs),
        needs_any=list(spec.needs_any),
        labels=list(spec.labels),
        uses=spec.uses,
        run=spec.run,
        if_=spec.if_,
        command=job.spec.run if job.attempt else None,
        view=job_view(job),
        claims=claims,
        rejected=rejected,
        logs=log_links(state.workflow_id, name),
        instance_of=parent,
        instances=rows,
        instance_counts=None if rows is None else dict(Counter(row.status for row in rows)),
    )
    return Json(out.model_dump(mode="json", by_alias=True))


def claims_of(events: list[JobEvent]) -> tuple[list[ClaimRecord], list[RejectedRecord]]:
    """One record per claim (``JobStarted``), closed by the result of its epoch; a claim still
    open when a later one starts lost its lease to it."""
    claims: dict[int, dict[str, Any]] = {}
    rejected: list[RejectedRecord] = []

    def close(epoch: int, outcome: str, at: datetime, error: str | None = None) -> None:
        claim = claims.get(epoch)
        if claim is not None and claim["outcome"] == "running":
            claim.update(outcome=outcome, ended_at=at, error=error)

    for event in with_implied_starts(events):
        match event:
            case JobStarted():
                for open_claim in claims.values():
                    if open_claim["outcome"] == "running":
                        open_claim["outcome"] = "lost"
                claims[event.epoch] = {
                    "attempt": event.attempt,
                    "epoch": event.epoch,
                    "worker_id": event.worker_id,
                    "started_at": event.started_at,
                    "lease_ttl": event.lease_ttl,
                    "outcome": "running",
                }
            case JobSucceeded():
                close(event.epoch, "succeeded", event.ended_at)
            case JobFailed():
                close(event.epoch, "failed", event.ended_at, event.error)
            case JobCancelled():
                for epoch in list(claims):
                    close(epoch, "cancelled", event.at, event.reason)
            case JobResultRejected():
                rejected.append(
                    RejectedRecord(
                        attempt=event.attempt,
                        epoch=event.epoch,
                        worker_id=event.worker_id,
                        outcome=event.outcome,
                        reason=event.reason,
                        at=event.at,
                    )
                )
            case JobQueued():
                pass
    return [ClaimRecord(**claim) for claim in claims.values()], rejected


async def label_sets(request: Request) -> Response:
    """Queued jobs by requirement set (from the newest running workflows that have any) and the
    live workers whose labels and handlers cover each."""
    client = context(request).client
    rows = await client.list(status="running", limit=MAX_LISTED)
    waiting = [row.workflow_id for row in rows if row.job_counts.get(JobStatus.QUEUED.value, 0)]
    scanned = waiting[:MAX_SCANNED]
    gate = asyncio.Semaphore(_SCAN_CONCURRENCY)

    async def queued_in(workflow_id: str) -> list[frozenset[str]]:
        async with gate:
            history = await client.history(workflow_id)
        state = workflow.replay(history, WorkflowState(workflow_id=workflow_id))
        if state.definition is None:
            return []
        found = [
            requirement_set(job.labels, job.uses)
            for name, job in state.definition.jobs.items()
            if state.job(name).status is JobStatus.QUEUED
        ]
        # Fan-out instances: their labels as rendered (a matrix value may name one).
        for name in job_names(state.order, state.fanouts):
            current = state.job(name)
            if name not in state.definition.jobs and current.status is JobStatus.QUEUED:
                found.append(requirement_set(current.spec.labels, current.spec.uses))
        return found

    found = await asyncio.gather(*(queued_in(wf) for wf in scanned), return_exceptions=True)
    counts: dict[frozenset[str], int] = {}
    where: dict[frozenset[str], list[str]] = {}
    for workflow_id, reqs in zip(scanned, found, strict=True):
        if isinstance(reqs, BaseException):
            continue  # ended or vanished since the listing: nothing queued there any more
        for req in reqs:
            counts[req] = counts.get(req, 0) + 1
            seen = where.setdefault(req, [])
            if workflow_id not in seen and len(seen) < _SAMPLE:
                seen.append(workflow_id)
    live = [w for w in await client.workers() if not w.stale]
    out = LabelSetsOut(
        label_sets=[
            QueuedLabelSet(
                requirements=sorted(req),
                queued=counts[req],
                workflows=where[req],
                workers=[
                    w.worker_id for w in live if serves(capabilities(w.labels, w.handlers), req)
                ],
            )
            for req in sorted(counts, key=lambda r: (-counts[r], sorted(r)))
        ],
        workflows_scanned=len(scanned),
        complete=len(waiting) <= MAX_SCANNED and len(rows) < MAX_LISTED,
    )
    return Json(out.model_dump(mode="json"))
