"""The result of a dry run (``sdk.dry_run``): each job's fate and the workflow's end."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DryRun", "DryRunJob"]


@dataclass(frozen=True)
class DryRunJob:
    """One job's fate in a dry run.

    ``status``: ``succeeded``, ``failed``, ``skipped``, ``cancelled``, ``pending`` (never
    decided) or ``unsupported`` (the simulator cannot play it). ``reason``: why it was skipped or
    cancelled, its last error, or why it is unsupported. ``run``/``uses``/``with_``: what it
    would run, rendered; ``mocked``: its outputs came from ``mocks``; ``failed_on_purpose``: it
    was in ``failures``. A fanned-out job has ``instances`` (each a job of the result, named
    ``<job>-<index>``, with ``instance_of``); a ``workflow:`` job names its child ``workflow``
    and has ``child``, the dry run of its last child run (None when mocked or registered); a
    ``wait_for`` job says what it ``waits_for`` (answered at once with its mock as the data).
    """

    name: str
    status: str
    attempts: int = 0
    reason: str | None = None
    outputs: Mapping[str, str] = field(default_factory=dict)
    run: str | None = None
    uses: str | None = None
    with_: Mapping[str, Any] = field(default_factory=dict)
    mocked: bool = False
    failed_on_purpose: bool = False
    instances: int | None = None
    instance_of: str | None = None
    workflow: str | None = None
    child: DryRun | None = None
    waits_for: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "attempts": self.attempts,
            "reason": self.reason,
            "outputs": dict(self.outputs),
            "run": self.run,
            "uses": self.uses,
            "with": dict(self.with_),
            "mocked": self.mocked,
            "failed_on_purpose": self.failed_on_purpose,
        }
        if self.instances is not None:
            out["instances"] = self.instances
        if self.instance_of is not None:
            out["instance_of"] = self.instance_of
        if self.waits_for is not None:
            out["waits_for"] = self.waits_for
        if self.workflow is not None:
            out["workflow"] = self.workflow
            out["child"] = self.child.to_json_dict() if self.child is not None else None
        return out


@dataclass(frozen=True)
class DryRun:
    """What the engine would decide: ``status`` (``succeeded``, ``failed``, ``cancelled``, or
    ``running`` when the simulation could not reach an end), ``reason`` of a failure, the jobs
    in topological order (a fanned-out job followed by its instances), ``ran``: the jobs that
    ran, in the order they were claimed, ``outputs``: the workflow's, and ``notes``: what the
    dry run could not decide as the engine would (a registered child, an unused mock)."""

    workflow: str
    status: str
    reason: str | None
    inputs: Mapping[str, Any]
    jobs: Mapping[str, DryRunJob]
    ran: tuple[str, ...]
    outputs: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def job(self, name: str) -> DryRunJob:
        return self.jobs[name]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "status": self.status,
            "reason": self.reason,
            "inputs": dict(self.inputs),
            "ran": list(self.ran),
            "outputs": dict(self.outputs),
            "notes": list(self.notes),
            "jobs": {name: job.to_json_dict() for name, job in self.jobs.items()},
        }
