"""A dry run, to test a workflow without running it: ``sdk.dry_run``, ``jetwork run --dry-run``.

The whole DAG is decided in this process — no server, no workers — by the same pure actors the
engine runs (``actors.workflow`` and ``actors.job``'s ``decide``/``evolve``), with every queued
job claimed at once by a simulated worker that succeeds with the outputs mocked for it (none by
default) or fails when told to (each attempt, so retries are used up as they would be). Time is
logical: delays, backoffs and timeouts do not wait and do not fire. What it shows is what the
engine would decide: which jobs run (with their commands rendered), which are skipped or fail
and why, and the workflow's end (Conductor's ``test_workflow``).

A fanned-out job (matrix, ``for_each``) runs every instance, each with the outputs mocked for
its job or for it alone (``test-2``); a ``for_each`` over an upstream job's outputs reads its
mock. A ``workflow:`` job's child run is decided here too, recursively, from the definition the
file embeds (its result under the job), unless it is mocked as one unit; a registered definition
(``workflow: NAME``) is not read without a server: it counts as succeeding with no outputs, or
with its mock, and the job says so. A ``wait_for`` job's signal (or webhook request) arrives at
once with its mock as the data; failing it fails the wait as a timeout would.

A job the simulator cannot play (a kind of job it does not know, or one whose decisions raise)
is reported as ``unsupported`` with the reason and counts as failed; the dry run goes on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from actors import inline_steps, signals, subworkflows, workflow
from actors import job as job_actor
from actors.commands import (
    AdmitWorkflow,
    Advance,
    ClaimJob,
    CompleteJob,
    FailJob,
    HookWorkflow,
    RequeueJob,
    SignalWorkflow,
    StartWorkflow,
)
from actors.fanout_state import job_names, parent_of
from actors.workflow_state import WorkflowState
from events.base import Event
from events.catalog import (
    JobFailed,
    JobQueued,
    JobStatus,
    JobWaiting,
    SubWorkflowStarted,
    WorkflowStatus,
)
from events.definition import WorkflowDefinition
from events.requests import ChildEndedRequest
from sdk._dry_run_result import DryRun, DryRunJob
from sdk._dry_run_targets import Targets, embed_stubs
from sdk.builder import Workflow
from sdk.client.definitions import resolve_definition
from sdk.errors import InvalidArgument

__all__ = ["DryRun", "DryRunJob", "dry_run"]

# A job failed on purpose and retried for ever (``on_failure: retry_forever``) stops here.
MAX_ATTEMPTS = 25
# A guard only: every round decides or plays something, and attempts and loops are bounded.
_MAX_ROUNDS = 1_000_000
_WORKFLOW_ID = "wf-dry-run"
_WORKER = "dry-run"


def dry_run(
    definition_or_path: str | os.PathLike[str] | WorkflowDefinition | Workflow | Mapping[str, Any],
    *,
    inputs: Mapping[str, Any] | None = None,
    mocks: Mapping[str, Mapping[str, Any]] | None = None,
    failures: Iterable[str] = (),
    now: datetime | None = None,
) -> DryRun:
    """Decide the whole workflow in process, with ``mocks`` (job -> its outputs; values are
    stored as text, as a worker's are, lists and mappings as JSON) and ``failures`` (jobs whose
    every attempt fails); other jobs succeed with no outputs.

    A fanned-out job's name applies to each of its instances, ``JOB-INDEX`` to one instance; a
    ``workflow:`` job's name mocks (or fails) its whole child run, which is otherwise decided
    here too from the embedded definition.

    Raises ``InvalidWorkflow`` for an invalid definition or inputs (every problem, as a start
    would) and ``InvalidArgument`` for a mock or failure naming no job of the workflow.
    """
    definition, stubbed = embed_stubs(resolve_definition(definition_or_path))
    mocked = {name: _texts(name, outputs) for name, outputs in (mocks or {}).items()}
    targets = Targets.checked(definition, mocked, failures)
    simulation = _Simulation(definition, targets, now or datetime.now(UTC), stubbed=stubbed)
    return simulation.play(inputs or {})


def _texts(job: str, outputs: Mapping[str, Any]) -> dict[str, str]:
    if not isinstance(outputs, Mapping):
        raise InvalidArgument(f"mock of {job!r}: expected a mapping of outputs, got {outputs!r}")
    return {str(key): _text(value) for key, value in outputs.items()}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):  # a list a for_each reads with fromJSON, say
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)


class _Simulation:
    def __init__(
        self,
        definition: WorkflowDefinition,
        targets: Targets,
        now: datetime,
        *,
        stubbed: frozenset[str] = frozenset(),
    ) -> None:
        self.definition = definition
        self.targets = targets
        self.stubbed = stubbed
        self.now = now
        self.state = WorkflowState(workflow_id=_WORKFLOW_ID)
        self.ran: list[str] = []
        self.unsupported: dict[str, str] = {}
        self.children: dict[str, DryRun] = {}  # job -> the dry run of its last child
        self.registered: dict[str, str] = {}  # job -> the registered child not decided here
        self.waits: dict[str, str] = {}  # job -> what it waited for, answered with no data
        self.group: str | None = None  # the concurrency group it was admitted to

    def play(self, inputs: Mapping[str, Any]) -> DryRun:
        start = StartWorkflow(
            workflow_id=_WORKFLOW_ID, definition=self.definition, inputs=dict(inputs), now=self.now
        )
        touched = self._apply(workflow.decide(self.state, start))
        # Each round: the workflow decides, then every job it queued (or whose child it
        # started) is played to its end. Definition jobs are looked at each round; instances
        # only when a decision names them (a fan-out of 10,000 stays cheap).
        for _ in range(_MAX_ROUNDS):
            decided = self._apply(
                workflow.decide(self.state, Advance(workflow_id=_WORKFLOW_ID, now=self._tick()))
            )
            decided += self._admitted()
            named = dict.fromkeys(
                e.job
                for e in [*touched, *decided]
                if isinstance(e, JobQueued | SubWorkflowStarted | JobWaiting)
            )
            touched = []
            listed = set(self.state.order)
            candidates = [*self.state.order, *(n for n in named if n not in listed)]
            queued = [n for n in candidates if self._playable(n, JobStatus.QUEUED)]
            for name in queued:
                self._play_job(name)
            children = [n for n in candidates if self._playable(n, JobStatus.RUNNING)]
            children = [n for n in children if self._job(n).child_id is not None]
            for name in children:
                self._play_child(name)
            waiting = [n for n in candidates if self._playable(n, JobStatus.WAITING)]
            for name in waiting:
                self._play_wait(name)
            if not decided and not queued and not children and not waiting:
                break
        return self._result()

    def _admitted(self) -> list[Event]:
        """A run queued for a slot of its concurrency group is alone in it here: admitted."""
        if self.state.status is not WorkflowStatus.QUEUED or self.state.group is None:
            return []
        self.group = self.state.group
        admit = AdmitWorkflow(workflow_id=_WORKFLOW_ID, run=self.state.queued_run, now=self._tick())
        return self._apply(workflow.decide(self.state, admit))

    def _playable(self, name: str, status: JobStatus) -> bool:
        return self._job(name).status is status and name not in self.unsupported

    def _tick(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now

    def _apply(self, events: list[Event]) -> list[Event]:
        if events:
            self.state = workflow.replay(events, self.state)
        return events

    def _job(self, name: str) -> job_actor.JobState:
        return self.state.job(name)

    def _parent(self, name: str) -> str | None:
        found = parent_of(self.state.fanouts, name)
        return found[0] if found is not None else None

    def _fails(self, name: str) -> bool:
        return self.targets.fails(name, self._parent(name))

    def _mock(self, name: str) -> Mapping[str, str] | None:
        return self.targets.mock_for(name, self._parent(name))

    def _play_job(self, name: str) -> None:
        until = self._job(name).sleep_until
        if until is not None:  # a sleep (or until:): its moment comes at once, logically
            self.now = max(self.now, until)
            self._apply(list(inline_steps.wake(self._job(name), self._job(name).attempt, self.now)))
            return
        try:
            why = _cannot_play(self._job(name))
            if why is not None:
                self.unsupported[name] = why
                self._attempt(name, fail_with=f"unsupported in a dry run: {why}", final=True)
                return
            self.ran.append(name)
            while True:
                current = self._job(name)
                on_purpose = self._fails(name)
                final = on_purpose and current.attempt >= MAX_ATTEMPTS
                error = "failed on purpose (dry run)" if on_purpose else None
                if final:
                    error = f"failed on purpose on each of {MAX_ATTEMPTS} attempts (dry run)"
                self._attempt(name, fail_with=error, final=final)
                if not self._requeued(name):
                    return
        except Exception as error:  # a decision the simulator cannot play: say so, go on
            self.unsupported[name] = f"the simulator could not play it: {error}"

    def _requeued(self, name: str) -> bool:
        """Whether ``name`` was retrying and is queued (or its child started) again."""
        after = self._job(name)
        if after.status is not JobStatus.RETRYING:
            return False
        requeue = RequeueJob(workflow_id=_WORKFLOW_ID, job=name, now=self._tick())
        self._apply(list(job_actor.decide(after, requeue)))
        return True

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
            done = CompleteJob(**ids, worker_id=_WORKER, outputs=dict(self._mock(name) or {}))
            self._apply(list(job_actor.decide(running, done)))
        else:
            failed = FailJob(**ids, worker_id=_WORKER, error=fail_with, retryable=not final)
            self._apply(list(job_actor.decide(running, failed)))

    def _play_child(self, name: str) -> None:
        """Settle each child run of ``name`` (a ``workflow:`` job) as its end notice would."""
        try:
            self.ran.append(name)
            while True:
                current = self._job(name)
                if current.attempt >= MAX_ATTEMPTS and self._fails(name):
                    error = f"failed on purpose on each of {MAX_ATTEMPTS} attempts (dry run)"
                    self.unsupported[name] = error
                    return
                notice = self._child_end(name, current)
                self._apply(subworkflows.settle(self.state, notice, self._tick()))
                if not self._requeued(name):
                    return
        except Exception as error:  # a decision the simulator cannot play: say so, go on
            self.unsupported[name] = f"the simulator could not play it: {error}"

    def _child_end(self, name: str, current: job_actor.JobState) -> ChildEndedRequest:
        assert current.child_id is not None and current.spec.workflow is not None
        ids = {
            "workflow_id": _WORKFLOW_ID,
            "job": name,
            "attempt": current.attempt,
            "child_id": current.child_id,
        }
        if self._fails(name):
            return ChildEndedRequest(**ids, status="failed", reason="failed on purpose (dry run)")
        mock = self._mock(name)
        if mock is not None:
            return ChildEndedRequest(**ids, status="succeeded", outputs=dict(mock))
        ref = current.spec.workflow
        if ref in self.stubbed:
            self.registered[name] = ref
            return ChildEndedRequest(**ids, status="succeeded")
        child = _Simulation(
            self.definition.workflows[ref], _NO_TARGETS, self.now, stubbed=self.stubbed
        )
        result = child.play(current.spec.with_)
        self.children[name] = result
        if result.status in ("succeeded", "failed", "cancelled"):
            ended = {"status": result.status, "reason": result.reason}
            return ChildEndedRequest(**ids, **ended, outputs=dict(result.outputs))
        reason = f"its dry run ended {result.status}: {result.reason or 'no end reached'}"
        return ChildEndedRequest(**ids, status="failed", reason=reason)

    def _play_wait(self, name: str) -> None:
        """The signal (or webhook request) a ``wait_for`` job waits for arrives, with the job's
        mock as its data; with ``--fail`` the wait fails as a timeout would."""
        current = self._job(name)
        wait = current.wait
        assert wait is not None
        self.ran.append(name)
        what = _waited(wait)
        answer = "no data" if wait.signal is not None else "only what it matches"
        if self._fails(name):
            error = f"failed on purpose (dry run): no {what} arrived"
            ids = {**current.ids, "attempt": current.attempt, "epoch": current.epoch}
            failed = JobFailed(
                **ids, error=error, retryable=False, timed_out=True, ended_at=self._tick()
            )
            self._apply([failed])
            return
        mock = self._mock(name)
        if mock is None:
            self.waits[name] = f"{what}: treated as arriving with {answer}"
        data: dict[str, Any] = dict(mock or {})
        now = self._tick()
        if wait.signal is not None:
            signal = SignalWorkflow(workflow_id=_WORKFLOW_ID, name=wait.signal, data=data,
                                    by=_WORKER, now=now)  # fmt: skip
            self._apply(workflow.decide(self.state, signal))
            self._apply(signals.resolve(self.state, now))
        else:
            body = {**(wait.match or {}), **data}
            hook = HookWorkflow(workflow_id=_WORKFLOW_ID, job=name, attempt=current.attempt,
                                body=body, by=_WORKER, now=now)  # fmt: skip
            self._apply(workflow.decide(self.state, hook))

    def _result(self) -> DryRun:
        names = list(job_names(self.state.order, self.state.fanouts))
        jobs = {name: self._job_result(name) for name in names}
        status = self.state.status
        reason = self.state.end_reason
        stuck = [name for name in self.unsupported if not self._job(name).status.is_terminal]
        if stuck:
            reason = f"the dry run cannot go past {', '.join(stuck)} (unsupported)"
        notes = [
            f"{self._parent(name) or name}: {ref!r} is a registered definition, not read without "
            "a server: treated as succeeding with no outputs; --mock "
            f"{self._parent(name) or name}='{{...}}' gives its outputs"
            for name, ref in self.registered.items()
        ]
        notes += [
            f"{name}: waits for {what}; --mock {name}='{{...}}' gives its data"
            for name, what in self.waits.items()
            if self._parent(name) is None  # (instances: one note for their job)
        ]
        fanned_waits = sorted({p for n in self.waits if (p := self._parent(n)) is not None})
        notes += [
            f"{parent}: its instances' waits are treated as answered with no data; "
            f"--mock {parent}='{{...}}' (or {parent}-INDEX) gives their data"
            for parent in fanned_waits
        ]
        notes += self._for_each_hints()
        if self.group is not None:
            notes.append(
                f"concurrency group {self.group!r}: admitted at once (no other run here; a real "
                "run waits for a slot)"
            )
        notes += [
            f"{name}: no such instance ran; its mock or failure was not used"
            for name in sorted(self.targets.instance_names())
            if name not in jobs
        ]
        return DryRun(
            workflow=self.definition.name,
            status=str(status) if status is not None else "pending",
            reason=reason,
            inputs=dict(self.state.inputs),
            jobs=jobs,
            ran=tuple(self.ran),
            outputs=dict(self.state.outputs),
            notes=tuple(dict.fromkeys(notes)),
        )

    def _for_each_hints(self) -> list[str]:
        """A ``for_each`` that failed on its upstream's outputs: empty unless mocked."""
        hints: list[str] = []
        for name, spec in self.definition.jobs.items():
            current = self._job(name)
            if spec.fan_out is None or spec.fan_out.for_each is None or not spec.needs:
                continue
            if current.status is JobStatus.FAILED and (current.error or "").startswith(
                f"jobs.{name}.for_each:"
            ):
                upstream = spec.needs[0]
                hints.append(
                    f"{name}: for_each reads outputs of {', '.join(spec.needs)}, empty in a dry "
                    f'run unless mocked, e.g. --mock {upstream}=\'{{"KEY": ["a", "b"]}}\''
                )
        return hints

    def _job_result(self, name: str) -> DryRunJob:
        current = self._job(name)
        spec = current.spec
        unsupported = self.unsupported.get(name)
        reason = current.skip_reason or current.cancel_reason or current.error
        fan = self.state.fanouts.get(name)
        definition = self.definition.jobs.get(name)
        ran = name in self.ran
        status = "unsupported" if unsupported else str(current.status)
        parent = self._parent(name)
        ended = self.state.status is not None and self.state.status.is_terminal
        if parent is not None and current.status is JobStatus.PENDING and ended:
            # As ``jetwork status`` shows an instance a stopped fan-out never started.
            status, reason = "cancelled", f"not started: {parent} stopped"
        return DryRunJob(
            name=name,
            status=status,
            attempts=current.attempt,
            reason=unsupported or reason or (_REGISTERED if name in self.registered else None),
            outputs=dict(current.outputs),
            run=spec.run,
            uses=spec.uses,
            with_=dict(spec.with_),
            mocked=ran and self._mock(name) is not None and not self._fails(name),
            failed_on_purpose=ran and self._fails(name),
            instances=fan.count if fan is not None else None,
            instance_of=parent,
            workflow=spec.workflow or (definition.workflow if definition is not None else None),
            child=self.children.get(name),
            waits_for=_waited(current.wait) if current.wait is not None else None,
        )


def _waited(wait: JobWaiting) -> str:
    return f"signal {wait.signal!r}" if wait.signal is not None else "a webhook request"


_NO_TARGETS = Targets(mocks={}, failures=frozenset())
_REGISTERED = "a registered definition: not read without a server (see the note)"


def _cannot_play(current: job_actor.JobState) -> str | None:
    """Why the simulator cannot play a queued job, if it cannot: a kind it does not know."""
    if current.spec.run is None and current.spec.uses is None:
        return "a job with neither run nor uses (a kind of job the dry run does not know)"
    return None
