"""Namespace quotas: at most so many running workflows (and running jobs) in a namespace.

An operator sets a namespace's quota (``jetwork namespaces set NAME --max-running-workflows N
--max-running-jobs N --over-quota wait|refuse``): key ``quota.<namespace>`` of KV ``jw_control``
(``QuotaRecord``, who set it, when). The running workflows are **holders** of KV ``jw_quotas``
key ``workflows.<namespace>`` (``WorkflowHolder``s), taken by compare-and-set by the engine that
starts a workflow and given back when it ends (``actors/engine/quotas.py``); running jobs are an
implicit concurrency group of the namespace (``jobs.<namespace>``, sdk/worker/concurrency.py),
taken by the worker before a claim like any group. However many engines and workers race, a key
never holds more than the quota. Pure: no I/O here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

import orjson
from pydantic import BaseModel, ConfigDict, Field

from events.errors import JetworkError

PREFIX: Final = "quota."
"""Keys of ``jw_control`` holding namespaces' quotas."""
WORKFLOWS_PREFIX: Final = "workflows."
"""Keys of ``jw_quotas`` holding a namespace's running workflows."""
JOBS_GROUP_PREFIX: Final = "jobs."
"""Keys of ``jw_concurrency`` holding a namespace's running jobs (an implicit group)."""


class OverQuota(StrEnum):
    WAIT = "wait"  # the start waits in the commands stream until a running workflow ends
    REFUSE = "refuse"  # the start is refused (answered, dead-lettered)


class QuotaExceeded(JetworkError):
    """A start refused because its namespace runs as many workflows as its quota allows."""


class QuotaRecord(BaseModel):
    """A namespace's quota (the value of ``quota.<namespace>``); None: no bound of that kind."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    max_running_workflows: int | None = Field(default=None, ge=1)
    max_running_jobs: int | None = Field(default=None, ge=1)
    over_quota: OverQuota = OverQuota.WAIT
    by: str = ""
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


class WorkflowHolder(BaseModel):
    """A running workflow counted against its namespace's quota, since when (epoch seconds)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    workflow_id: str
    since: float


def quota_key(namespace: str) -> str:
    return f"{PREFIX}{namespace}"


def workflows_key(namespace: str) -> str:
    return f"{WORKFLOWS_PREFIX}{namespace}"


def jobs_group(namespace: str) -> str:
    return f"{JOBS_GROUP_PREFIX}{namespace}"


def decode_holders(value: bytes | None) -> list[WorkflowHolder]:
    return [WorkflowHolder.model_validate(item) for item in orjson.loads(value)] if value else []


def encode_holders(holders: list[WorkflowHolder]) -> bytes:
    return orjson.dumps([holder.model_dump() for holder in holders])


def refusal(namespace: str, workflow_id: str, limit: int) -> str:
    """The message of a start refused over quota (the engine's answer and dead letter)."""
    return (
        f"cannot start workflow {workflow_id!r}: namespace {namespace!r} runs {limit} "
        f"workflow(s), its quota (max running workflows {limit}, over quota: refuse); "
        f"start it again once one has ended, or raise it with "
        f"`jetwork namespaces set {namespace} --max-running-workflows N`"
    )


def admit(
    holders: list[WorkflowHolder], workflow_id: str, limit: int, now: float
) -> list[WorkflowHolder] | None:
    """The holders with ``workflow_id`` among them, or None when the quota is full. A workflow
    holding already (a start redelivered after its admission) keeps its place."""
    if any(h.workflow_id == workflow_id for h in holders):
        return holders
    if len(holders) >= limit:
        return None
    return [*holders, WorkflowHolder(workflow_id=workflow_id, since=now)]
