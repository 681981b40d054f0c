"""A dry run, to test a workflow without running it: ``sdk.dry_run``, ``jetwork run --dry-run``.

The whole DAG is decided in this process — no server, no workers — by the same pure actors the
engine runs (``actors.workflow`` and ``actors.job``'s ``decide``/``evolve``), with every queued
job claimed at once by a simulated worker that succeeds with the outputs mocked for it (none by
default) or fails when told to (each attempt, so retries are used up as they would be). Time is
logical: delays, backoffs and timeouts do not wait and do not fire. What it shows is what the
engine would decide: which jobs run (with their commands rendered), which are skipped or fail
and why, and the workflow's end (Conductor's ``test_workflow``).

A job the simulator cannot play (a kind of job it does not know, or one whose decisions raise)
is reported as ``unsupported`` with the reason and counts as failed; the dry run goes on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from actors import job as job_actor
from actors import workflow
from actors.commands import Advance, ClaimJob, CompleteJob, FailJob, RequeueJob, StartWorkflow
from actors.workflow_state import WorkflowState
from events.base import Event
from events.catalog import JobStatus
from events.definition import WorkflowDefinition
from sdk.builder import Workflow
from sdk.client.definitions import resolve_definition
from sdk.errors import InvalidArgument

__all__ = ["DryRun", "DryRunJob", "dry_run"]

# A job failed on purpose and retried for ever (``on_failure: retry_forever``) stops here.
MAX_ATTEMPTS = 25
_WORKFLOW_ID = "wf-dry-run"
_WORKER = "dry-run"


@dataclass(frozen=True)
class DryRunJob:
    """One job's fate in a dry run.

    ``status``: ``succeeded``, ``failed``, ``skipped``, ``cancelled``, ``pending`` (never
    decided) or ``unsupported`` (the simulator cannot play it). ``reason``: why it was skipped or
    cancelled, its last error, or why it is unsupported. ``run``/``uses``/``with_``: what it
    would run, rendered; ``mocked``: its outputs came from ``mocks``; ``failed_on_purpose``: it
    was in ``failures``.
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

    def to_json_dict(self) -> dict[str, Any]:
        out = {
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
        return out


@dataclass(frozen=True)
class DryRun:
    """What the engine would decide: ``status`` (``succeeded``, ``failed``, ``cancelled``, or
    ``running`` when the simulation could not reach an end), ``reason`` of a failure, the jobs
    in topological order, and ``ran``: the jobs that ran, in the order they were claimed."""

    workflow: str
    status: str
    reason: str | None
    inputs: Mapping[str, Any]
    jobs: Mapping[str, DryRunJob]
    ran: tuple[str, ...]

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
            "jobs": {name: job.to_json_dict() for name, job in self.jobs.items()},
        }


def dry_run(
    definition_or_path: str | os.PathLike[str] | WorkflowDefinition | Workflow | Mapping[str, Any],
    *,
    inputs: Mapping[str, Any] | None = None,
    mocks: Mapping[str, Mapping[str, Any]] | None = None,
    failures: Iterable[str] = (),
    now: datetime | None = None,
) -> DryRun:
    """Decide the whole workflow in process, with ``mocks`` (job -> its outputs; values are
    stored as text, as a worker's are) and ``failures`` (jobs whose every attempt fails); other
    jobs succeed with no outputs.

    Raises ``InvalidWorkflow`` for an invalid definition or inputs (every problem, as a start
    would) and ``InvalidArgument`` for a mock or failure naming no job of the workflow.
    """
    definition = resolve_definition(definition_or_path)
    mocked = {name: _texts(name, outputs) for name, outputs in (mocks or {}).items()}
    failing = frozenset(failures)
    for name in sorted(set(mocked) | failing):
        if name not in definition.jobs:
            known = ", ".join(definition.jobs)
            raise InvalidArgument(f"{name!r}: the workflow has no such job (its jobs: {known})")
    return _Simulation(definition, mocked, failing, now or datetime.now(UTC)).play(inputs or {})


def _texts(job: str, outputs: Mapping[str, Any]) -> dict[str, str]:
    if not isinstance(outputs, Mapping):
        raise InvalidArgument(f"mock of {job!r}: expected a mapping of outputs, got {outputs!r}")
    return {str(key): _text(value) for key, value in outputs.items()}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


class _Simulation:
    def __init__(
        self,
        definition: WorkflowDefinition,
        mocks: Mapping[str, Mapping[str, str]],
        failures: frozenset[str],
        now: datetime,
    ) -> None:
        self.definition = definition
        self.mocks = mocks
        self.failures = failures
        self.now = now
        self.state = WorkflowState(workflow_id=_WORKFLOW_ID)
        self.ran: list[str] = []
        self.unsupported: dict[str, str] = {}

    def play(self, inputs: Mapping[str, Any]) -> DryRun:
        self._apply(
            workflow.decide(
                self.state,
                StartWorkflow(
                    workflow_id=_WORKFLOW_ID,
                    definition=self.definition,
                    inputs=dict(inputs),
                    now=self.now,
                ),
            )
        )
        # Each round: the workflow decides, then every job it queued is played to its end.
        # A DAG of n jobs with at most MAX_ATTEMPTS attempts each ends well within the bound.
        for _ in range(len(self.definition.jobs) * (MAX_ATTEMPTS + 2) + 2):
            decided = self._apply(
                workflow.decide(self.state, Advance(workflow_id=_WORKFLOW_ID, now=self._tick()))
            )
            queued = [
                name
                for name in self.state.order
                if self._job(name).status is JobStatus.QUEUED and name not in self.unsupported
            ]
            for name in queued:
                self._play_job(name)
            if not decided and not queued:
                break
        return self._result()

    def _tick(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now

    def _apply(self, events: list[Event]) -> list[Event]:
        if events:
            self.state = workflow.replay(events, self.state)
        return events

    def _job(self, name: str) -> job_actor.JobState:
        return self.state.job(name)

    def _play_job(self, name: str) -> None:
        try:
            why = _cannot_play(self._job(name))
            if why is not None:
                self.unsupported[name] = why
                self._attempt(name, fail_with=f"unsupported in a dry run: {why}", final=True)
                return
            self.ran.append(name)
            while True:
                current = self._job(name)
                on_purpose = name in self.failures
                final = on_purpose and current.attempt >= MAX_ATTEMPTS
                error = "failed on purpose (dry run)" if on_purpose else None
                if final:
                    error = f"failed on purpose on each of {MAX_ATTEMPTS} attempts (dry run)"
                self._attempt(name, fail_with=error, final=final)
                after = self._job(name)
                if after.status is not JobStatus.RETRYING:
                    return
                requeue = RequeueJob(workflow_id=_WORKFLOW_ID, job=name, now=self._tick())
                self._apply(list(job_actor.decide(after, requeue)))
        except Exception as error:  # a decision the simulator cannot play: say so, go on
            self.unsupported[name] = f"the simulator could not play it: {error}"

    def _attempt(self, name: str, *, fail_with: str | None, final: bool) -> None:
        current = self._job(name)
        claim = ClaimJob(
            workflow_id=_WORKFLOW_ID,
            job=name,
            attempt=current.attempt,
            worker_id=_WORKER,
            lease_ttl=30.0,
            now=self._tick(),
        )
        self._apply(list(job_actor.decide(current, claim)))
        running = self._job(name)
        ids = {
            "workflow_id": _WORKFLOW_ID,
            "job": name,
            "epoch": running.epoch,
            "now": self._tick(),
        }
        if fail_with is None:
            done = CompleteJob(**ids, worker_id=_WORKER, outputs=dict(self.mocks.get(name, {})))
            self._apply(list(job_actor.decide(running, done)))
        else:
            failed = FailJob(**ids, worker_id=_WORKER, error=fail_with, retryable=not final)
            self._apply(list(job_actor.decide(running, failed)))

    def _result(self) -> DryRun:
        jobs = {name: self._job_result(name) for name in self.state.order}
        status = self.state.status
        reason = self.state.end_reason
        stuck = [name for name in self.unsupported if not self._job(name).status.is_terminal]
        if stuck:
            reason = f"the dry run cannot go past {', '.join(stuck)} (unsupported)"
        return DryRun(
            workflow=self.definition.name,
            status=str(status) if status is not None else "pending",
            reason=reason,
            inputs=dict(self.state.inputs),
            jobs=jobs,
            ran=tuple(self.ran),
        )

    def _job_result(self, name: str) -> DryRunJob:
        current = self._job(name)
        spec = current.spec
        unsupported = self.unsupported.get(name)
        reason = current.skip_reason or current.cancel_reason or current.error
        return DryRunJob(
            name=name,
            status="unsupported" if unsupported else str(current.status),
            attempts=current.attempt,
            reason=unsupported or reason,
            outputs=dict(current.outputs),
            run=spec.run,
            uses=spec.uses,
            with_=dict(spec.with_),
            mocked=name in self.mocks and name in self.ran,
            failed_on_purpose=name in self.failures and name in self.ran,
        )


def _cannot_play(current: job_actor.JobState) -> str | None:
    """Why the simulator cannot play a queued job, if it cannot: a kind it does not know."""
    if current.spec.run is None and current.spec.uses is None:
        return "a job with neither run nor uses (a kind of job the dry run does not know)"
    return None
