"""A tiny in-memory engine for scenario tests: the actors' decisions, recorded in order.

It appends what the actors decide to a list of ``RecordedEvent`` (the stream), folds them with
``workflow.replay``, and after every append checks two things the real host relies on: the CAS
expectations that ``plan_appends`` computes match the log, and ``Advance`` is idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from actors import inline_steps, job, workflow
from actors.appends import plan_appends
from actors.commands import (
    Advance,
    AnyJobCommand,
    CancelWorkflow,
    ClaimJob,
    CompleteJob,
    ConfirmCancelled,
    FailJob,
    RequeueJob,
    StartWorkflow,
    TimeoutWorkflow,
)
from actors.workflow import WorkflowState
from events.base import Event, RecordedEvent
from events.catalog import JobEvent, JobStatus, WorkflowStatus
from events.definition import WorkflowDefinition
from events.memory_store import matches
from tests.unit.given_when_then import at

# What a job does when it runs: "ok", outputs (a dict: success with them), "fail" (retryable),
# "fatal" (permanent failure) or "hang" (keeps running until stopped).
Outcome = str | Mapping[str, str]


@dataclass
class Simulation:
    workflow_id: str = "wf-1"
    clock: float = 0.0
    log: list[RecordedEvent] = field(default_factory=list)
    state: WorkflowState = field(init=False)

    def __post_init__(self) -> None:
        self.state = WorkflowState(workflow_id=self.workflow_id)

    @property
    def ids(self) -> dict[str, str]:
        return {"workflow_id": self.workflow_id}

    def record(self, events: Sequence[Event]) -> list[Event]:
        for append in plan_appends(self.state, events):
            assert append.expected_last_seq == self._last_seq(append.actor_filter)
            start = len(self.log)
            self.log += [
                RecordedEvent(seq=start + i + 1, subject=e.subject(), time=at(self.clock), event=e)
                for i, e in enumerate(append.events)
            ]
            self.state = workflow.replay(self.log[start:], self.state)
        return list(events)

    def _last_seq(self, actor_filter: str) -> int:
        return max((r.seq for r in self.log if matches(actor_filter, r.subject)), default=0)

    def decide(self, command: Any) -> list[Event]:
        return self.record(workflow.decide(self.state, command))

    def start(self, definition: WorkflowDefinition, **inputs: Any) -> list[Event]:
        command = StartWorkflow(**self.ids, definition=definition, inputs=inputs, now=self.now)
        return self.decide(command)

    def advance(self) -> list[Event]:
        events = self.decide(Advance(**self.ids, now=self.now))
        again = workflow.decide(self.state, Advance(**self.ids, now=self.now))
        assert again == [], f"Advance is not idempotent: {again}"
        return events

    def cancel(self, reason: str = "cancelled by user", *, force: bool = False) -> list[Event]:
        return self.decide(CancelWorkflow(**self.ids, reason=reason, force=force, now=self.now))

    def timeout(self) -> list[Event]:
        return self.decide(TimeoutWorkflow(**self.ids, now=self.now))

    @property
    def now(self) -> Any:
        return at(self.clock)

    def tick(self, seconds: float = 1.0) -> None:
        self.clock += seconds

    def job(self, name: str, command: type[AnyJobCommand], **fields: Any) -> list[Event]:
        current = self.state.job(name)
        decided = job.decide(current, command(**self.ids, job=name, now=self.now, **fields))
        return self.record(decided)

    def claim(self, name: str, worker: str = "w1", delivery: int = 1) -> int:
        attempt = self.state.job(name).attempt
        self.job(
            name,
            ClaimJob,
            attempt=attempt,
            worker_id=worker,
            delivery=delivery,
            dispatch_seq=attempt,
            lease_ttl=30,
        )
        return self.state.job(name).epoch

    def finish(self, name: str, outcome: Outcome) -> None:
        """The holder of ``name``'s lease reports ``outcome``."""
        epoch, worker = self.state.job(name).epoch, self.state.job(name).worker_id
        if isinstance(outcome, Mapping):
            self.job(name, CompleteJob, epoch=epoch, worker_id=worker, outputs=dict(outcome))
        elif outcome == "ok":
            self.job(name, CompleteJob, epoch=epoch, worker_id=worker)
        elif outcome in ("fail", "fatal"):
            self.job(
                name,
                FailJob,
                epoch=epoch,
                worker_id=worker,
                error=f"{name} failed",
                retryable=outcome == "fail",
            )
        elif outcome != "hang":
            raise ValueError(f"unknown outcome {outcome!r}")

    def run(
        self,
        outcomes: Mapping[str, Sequence[Outcome]] | None = None,
        *,
        cancel_at_step: int | None = None,
        steps: int = 100,
    ) -> None:
        """Advance, run queued jobs and fire due retry timers until nothing moves.

        Unscripted attempts succeed. With ``cancel_at_step`` the workflow is cancelled then, and
        running jobs asked to stop confirm it on the next step.
        """
        scripts = {name: list(seq) for name, seq in (outcomes or {}).items()}
        for step in range(steps):
            if step == cancel_at_step and self.state.status is WorkflowStatus.RUNNING:
                self.cancel()
            self.advance()
            moved = [self._step_job(name, scripts) for name in self.state.order]  # each job steps
            if not any(moved) and (cancel_at_step is None or step >= cancel_at_step):
                return
        raise AssertionError("the workflow did not settle")

    def _step_job(self, name: str, scripts: dict[str, list[Outcome]]) -> bool:
        current = self.state.job(name)
        if current.status is JobStatus.QUEUED and current.sleep_until is not None:
            # A sleep: no worker claims it; its timer fires when due.
            self.clock = max(self.clock, _seconds(current.sleep_until))
            self.record(inline_steps.wake(current, current.attempt, self.now))
        elif current.status is JobStatus.QUEUED:
            self.tick()
            self.claim(name)
            script = scripts.get(name) or []
            self.finish(name, script.pop(0) if script else "ok")
        elif current.status is JobStatus.RETRYING:
            self.clock = max(self.clock, _seconds(current.not_before))
            self.job(name, RequeueJob)
        elif current.status is JobStatus.RUNNING and current.cancel_requested:
            self.stop(name)
        else:
            return False
        return True

    def stop(self, name: str) -> None:
        """The holder of ``name``'s lease confirms it stopped after a cancel request."""
        current = self.state.job(name)
        self.job(name, ConfirmCancelled, epoch=current.epoch, worker_id=current.worker_id)

    def statuses(self) -> dict[str, str]:
        return {name: str(self.state.job(name).status) for name in self.state.order}

    def job_events(self, name: str) -> list[str]:
        return [
            r.event.event_type
            for r in self.log
            if isinstance(r.event, JobEvent) and r.event.job == name
        ]


def _seconds(moment: Any) -> float:
    return 0.0 if moment is None else (moment - at(0)).total_seconds()
