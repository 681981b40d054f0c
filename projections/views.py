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

from actors.job import JobState
from actors.workflow import WorkflowState
from events.catalog import JobStatus


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class JobView(_View):
    status: str
    attempts: int
    outputs: dict[str, str] = Field(default_factory=dict)
    error: str | None = None
    worker_id: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


class WorkflowView(_View):
    workflow_id: str
    name: str
    status: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str | None = None
    jobs: dict[str, JobView] = Field(default_factory=dict)

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


def job_view(state: JobState) -> JobView:
    return JobView(
        status=state.status.value,
        attempts=state.attempt,
        outputs=dict(state.outputs),
        error=state.error,
        worker_id=state.worker_id,
        started_at=state.started_at,
        ended_at=state.ended_at if state.status.is_terminal else None,
    )


def workflow_view(state: WorkflowState) -> WorkflowView:
    """The view of a started workflow (``state.status`` must be set)."""
    if state.status is None or state.definition is None:
        raise ValueError(f"workflow {state.workflow_id} has not started")
    return WorkflowView(
        workflow_id=state.workflow_id,
        name=state.definition.name,
        status=state.status.value,
        started_at=state.started_at,
        ended_at=state.ended_at,
        reason=state.end_reason,
        jobs={name: job_view(state.job(name)) for name in state.order},
    )


def summary(view: WorkflowView) -> WorkflowSummary:
    counts = Counter(job.status for job in view.jobs.values())
    return WorkflowSummary(
        workflow_id=view.workflow_id,
        name=view.name,
        status=view.status,
        started_at=view.started_at,
        ended_at=view.ended_at,
        job_counts={status.value: counts.get(status.value, 0) for status in JobStatus},
    )
