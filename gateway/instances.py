"""Fan-out instances in the client API's reads (``.../graph``, ``.../jobs/{job}``).

A fanned-out job ``test`` runs as instances ``test-0``, ``test-1`` ... (``actors.fanout``), job
actors of their own that are not in the definition. The job page answers for an instance as for
any job (its parent's definition, its own claims, view and logs) and says whose instance it is;
the fanned-out job's page lists its instances; the graph carries each fanned-out job's instance
views, compact, so that the web UI can count and draw them and fold their events.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from actors.fanout_state import instance_name, parent_of
from actors.workflow_state import WorkflowState
from projections.views import job_view

__all__ = [
    "InstanceOf",
    "InstanceRow",
    "LogLinks",
    "instance_of",
    "instance_rows",
    "instance_views",
    "log_links",
]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class InstanceOf(_Out):
    job: str = Field(description="the fanned-out job this is an instance of")
    index: int = Field(description="its place in the items, from 0")
    item: Any = Field(description="its item: the matrix combination or the for_each value")


class InstanceRow(_Out):
    name: str = Field(description="`<job>-<index>`")
    index: int
    item: Any
    status: str
    attempts: int
    error: str | None = None


class LogLinks(_Out):
    lines: str = Field(description="the job's log lines (`?follow=1`: SSE)")
    stream: str = Field(description="the same as server-sent events")


def log_links(workflow_id: str, job: str) -> LogLinks:
    base = f"/api/workflows/{quote(workflow_id, safe='')}/jobs/{quote(job, safe='')}/logs"
    return LogLinks(lines=base, stream=f"{base}/stream")


def instance_of(state: WorkflowState, name: str) -> InstanceOf | None:
    """Whose instance ``name`` is, when it is one of a fan-out in ``state``."""
    found = parent_of(state.fanouts, name)
    if found is None:
        return None
    job, index = found
    return InstanceOf(job=job, index=index, item=state.fanouts[job].items[index])


def instance_rows(state: WorkflowState, job: str) -> list[InstanceRow] | None:
    """The instances of ``job`` in item order (None: it has not fanned out)."""
    fan = state.fanouts.get(job)
    if fan is None:
        return None
    rows = []
    for index, item in enumerate(fan.items):
        current = state.job(instance_name(job, index))
        rows.append(
            InstanceRow(
                name=current.job,
                index=index,
                item=item,
                status=current.status.value,
                attempts=current.attempt,
                error=current.error,
            )
        )
    return rows


def instance_views(state: WorkflowState, job: str) -> list[dict[str, Any]] | None:
    """The views of ``job``'s instances in item order, without their empty fields (10,000
    instances are a graph of their own)."""
    fan = state.fanouts.get(job)
    if fan is None:
        return None
    return [
        job_view(state.job(instance_name(job, index))).model_dump(mode="json", exclude_none=True)
        for index in range(fan.count)
    ]
