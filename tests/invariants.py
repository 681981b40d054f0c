"""Replay the whole event log and check the invariants a crash must never break.

``check_history`` is pure: give it recorded events (in stream order) and it returns a ``Report``
with counts and every violation found, each with the sequences that show it. ``check_log``
reads every message on ``evt.>`` from the events stream first (messages that are not events are
counted and skipped, as the engine does). ``python -m tests.invariants --nats URL`` prints it.

Per workflow:
- it was started (exactly one ``WorkflowStarted``, before any of its job events) and every id the
  caller submitted is in the log: nothing lost;
- it ended exactly once, every job is terminal, and ``Advance`` on the folded state decides
  nothing: no work left behind;
- its end is the one its DAG and its jobs' outcomes call for (cancelled if cancellation was
  requested; failed, naming exactly the failed ``fail_workflow`` jobs; else succeeded, and then
  every ``fail_workflow`` job succeeded or was skipped); unless cancelled or timed out, every job
  ran, was skipped or failed as ``dag.judge`` says on its upstream's final results;
- no job was queued, skipped or failed before every job it needs had ended; after the end,
  nothing is queued, claimed or settled (only late results are rejected; a timeout's own cleanup
  is the exception).

Per job:
- completed at most once: one terminal event at most (so never two ``JobSucceeded``, never a
  ``JobSucceeded`` and a final ``JobFailed``);
- every result counted (``JobSucceeded``, ``JobFailed``) came from the current lease holder;
- every ``JobStarted`` is the first claim of a queued attempt, or a re-execution explained by a
  lease expiry: the same attempt and dispatch message delivered again (higher ``delivery``);
  every attempt beyond the first follows a ``JobRetryScheduled`` for it, within ``max_attempts``;
- epochs strictly increase;
- every ``JobResultRejected`` names an epoch that was granted and no longer held the lease:
  lower than the current one while the job runs (equal only once the job was ended without it).
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from actors import dag, job, workflow
from actors.commands import Advance
from actors.fanout_state import parent_of
from actors.inline_steps import is_inline
from actors.job import JobState
from actors.workflow import WorkflowState
from events import subjects
from events.base import RecordedEvent
from events.catalog import (
    JobCancelled,
    JobEvent,
    JobFailed,
    JobLooped,
    JobQueued,
    JobResultRejected,
    JobSkipped,
    JobSleepStarted,
    JobStarted,
    JobStatus,
    JobSucceeded,
    JobWaiting,
    SubWorkflowStarted,
    WorkflowCancelled,
    WorkflowEvent,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowStatus,
    WorkflowSucceeded,
    implied_start,
)
from events.definition import OnFailure
from events.store import EventStore

_ENDS = (WorkflowSucceeded, WorkflowFailed, WorkflowCancelled)
_NEVER_AFTER_END = (JobQueued, JobStarted, JobSkipped)
_ALLOWED_FAIL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.SKIPPED})


@dataclass(frozen=True)
class Violation:
    workflow_id: str
    job: str | None
    invariant: str
    detail: str
    evidence: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = self.workflow_id + (f"/{self.job}" if self.job else "")
        lines = [f"[{self.invariant}] {where}: {self.detail}"]
        lines += [f"    {line}" for line in self.evidence]
        return "\n".join(lines)


@dataclass
class Report:
    workflows: int = 0
    ends: Counter[str] = field(default_factory=Counter)
    outcomes: dict[str, str] = field(default_factory=dict)  # workflow id -> its status
    jobs: int = 0
    events: int = 0
    executions: int = 0  # JobStarted: claims that ran a job
    re_executions: int = 0  # claims of a redelivered dispatch (the holder's lease expired)
    retries: int = 0  # attempts beyond the first
    rejections: int = 0
    skipped_messages: int = 0  # messages on evt.> that are not events
    redelivery_gaps: list[float] = field(default_factory=list)  # seconds, claim to re-claim
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(
        self, wf: str, job_name: str | None, invariant: str, detail: str, *evidence: str
    ) -> None:
        self.violations.append(Violation(wf, job_name, invariant, detail, tuple(evidence)))

    def summary(self) -> str:
        ends = ", ".join(f"{kind} {n}" for kind, n in sorted(self.ends.items())) or "none"
        gaps = (
            f"{min(self.redelivery_gaps):.2f}-{max(self.redelivery_gaps):.2f}s"
            if self.redelivery_gaps
            else "-"
        )
        return (
            f"workflows {self.workflows} ({ends}); jobs {self.jobs}; events {self.events}; "
            f"executions {self.executions}; re-executions after a lease expiry "
            f"{self.re_executions} (claim to re-claim {gaps}); retries {self.retries}; "
            f"rejected results {self.rejections}; non-events skipped {self.skipped_messages}; "
            f"violations {len(self.violations)}"
        )


def describe(record: RecordedEvent) -> str:
    """One line of evidence: sequence, type and the fields that matter for the invariants."""
    event = record.event
    fields = [f"#{record.seq}", event.event_type]
    for name in ("attempt", "epoch", "delivery", "dispatch_seq", "will_retry", "outcome"):
        value = getattr(event, name, None)
        if value is not None:
            fields.append(f"{name}={value}")
    worker = getattr(event, "worker_id", None)
    if worker:
        fields.append(f"worker={worker}")
    reason = getattr(event, "reason", None)
    if reason:
        fields.append(f"reason={reason!r}")
    return " ".join(fields)


# --- the log --------------------------------------------------------------------------------------


def check_history(
    records: Iterable[RecordedEvent],
    *,
    expected: Iterable[str] = (),
    skipped_messages: int = 0,
) -> Report:
    """Check every invariant over ``records`` (the log in stream order)."""
    report = Report(skipped_messages=skipped_messages)
    by_workflow: dict[str, list[RecordedEvent]] = defaultdict(list)
    for record in records:
        event = record.event
        if isinstance(event, WorkflowEvent | JobEvent):
            by_workflow[event.workflow_id].append(record)
            report.events += 1
        else:
            report.skipped_messages += 1
    for wf in sorted(set(expected) - by_workflow.keys()):
        report.add(wf, None, "lost", "submitted, but the log holds no event of it")
    for wf, history in by_workflow.items():
        _check_workflow(report, wf, sorted(history, key=lambda r: r.seq))
    return report


async def check_log(store: EventStore, *, expected: Iterable[str] = ()) -> Report:
    """Read every message on ``evt.>`` (tolerant of garbage) and check the invariants."""
    loaded = await store.read_tolerant(subjects.EVENTS_ALL)
    return check_history(loaded.events, expected=expected, skipped_messages=len(loaded.skipped))


# --- one workflow ---------------------------------------------------------------------------------


def _check_workflow(report: Report, wf: str, history: list[RecordedEvent]) -> None:
    report.workflows += 1
    starts = [r for r in history if isinstance(r.event, WorkflowStarted)]
    if len(starts) != 1:
        report.add(wf, None, "started once", f"{len(starts)} WorkflowStarted", *_lines(starts))
        if not starts:
            report.ends["never started"] += 1
            report.outcomes[wf] = "never started"
            return
    start = starts[0]
    early = [r for r in history if r.seq < start.seq]
    if early:
        report.add(wf, None, "started once", "events before WorkflowStarted", *_lines(early))
    try:
        state = workflow.replay(history)
    except Exception as exc:  # a history the actors cannot fold is a violation, not a crash
        report.add(wf, None, "folds", f"replay failed: {exc!r}")
        return
    definition = state.definition
    assert definition is not None  # a WorkflowStarted was folded
    report.jobs += len(definition.jobs)
    ends = [r for r in history if isinstance(r.event, _ENDS)]
    report.ends[str(state.status)] += 1
    report.outcomes[wf] = str(state.status)
    if len(ends) != 1:
        report.add(wf, None, "ends once", f"{len(ends)} end events", *_lines(ends))

    job_records: dict[str, list[RecordedEvent]] = defaultdict(list)
    for record in history:
        if isinstance(record.event, JobEvent):
            job_records[record.event.job].append(record)
    extra = job_records.keys() - definition.jobs.keys()
    instances = {name for name in extra if parent_of(state.fanouts, name) is not None}
    for name in sorted(extra - instances):
        report.add(wf, name, "known job", "events of a job the definition does not have")
    walks = {
        name: _check_job(
            report, wf, name, job_records.get(name, []), inline=is_inline(definition.jobs[name])
        )
        for name in definition.jobs
    }
    for name in sorted(instances):  # a fanned-out job's instances: job actors like any other
        _check_job(report, wf, name, job_records[name])

    _check_terminal(report, wf, state, history)
    if ends:
        _check_end(report, wf, state, ends[0])
        _check_after_end(report, wf, history, ends[0])
    _check_dag(report, wf, state, walks)


def _check_terminal(
    report: Report, wf: str, state: WorkflowState, history: list[RecordedEvent]
) -> None:
    if state.status is None or not state.status.is_terminal:
        report.add(wf, None, "terminal", f"the workflow is {state.status}")
    open_jobs = [n for n in state.order if not state.job(n).status.is_terminal]
    if open_jobs:
        statuses = ", ".join(f"{n}={state.job(n).status}" for n in open_jobs)
        report.add(wf, None, "terminal", f"jobs not terminal: {statuses}")
    now = history[-1].time
    left = workflow.decide(state, Advance(workflow_id=wf, now=now))
    if left:
        kinds = ", ".join(e.event_type for e in left)
        report.add(wf, None, "nothing left", f"Advance on the final state still decides {kinds}")


def _check_end(report: Report, wf: str, state: WorkflowState, end: RecordedEvent) -> None:
    event = end.event
    definition = state.definition
    assert definition is not None
    failed = sorted(
        name
        for name, spec in definition.jobs.items()
        if spec.on_failure is not OnFailure.CONTINUE and state.job(name).status is JobStatus.FAILED
    )
    if state.cancel_requested:
        expected = "WorkflowCancelled"
    elif isinstance(event, WorkflowFailed) and event.timed_out and definition.timeout:
        expected = "WorkflowFailed"  # the timeout decides, whatever the jobs did
    else:
        expected = "WorkflowFailed" if failed else "WorkflowSucceeded"
    if event.event_type != expected:
        report.add(
            wf,
            None,
            "correct end",
            f"ended {event.event_type}, expected {expected}",
            describe(end),
            *_job_statuses(state),
        )
        return
    if (
        isinstance(event, WorkflowFailed)
        and not event.timed_out
        and sorted(event.failed_jobs) != failed
    ):
        report.add(
            wf, None, "correct end", f"failed_jobs {sorted(event.failed_jobs)}, expected {failed}"
        )
    if isinstance(event, WorkflowSucceeded):
        bad = [
            name
            for name, spec in definition.jobs.items()
            if spec.on_failure is not OnFailure.CONTINUE
            and state.job(name).status not in _ALLOWED_FAIL_STATUSES
        ]
        if bad:
            report.add(
                wf,
                None,
                "correct end",
                f"succeeded with fail_workflow jobs {bad} neither succeeded nor skipped",
                *_job_statuses(state),
            )


def _check_after_end(
    report: Report, wf: str, history: list[RecordedEvent], end: RecordedEvent
) -> None:
    timed_out = isinstance(end.event, WorkflowFailed) and end.event.timed_out
    after = [r for r in history if r.seq > end.seq]
    if timed_out:
        # The timeout records the end first, then stops what runs: only new work is forbidden.
        bad = [r for r in after if isinstance(r.event, _NEVER_AFTER_END)]
    else:
        bad = [r for r in after if not isinstance(r.event, JobResultRejected)]
    if bad:
        report.add(
            wf,
            None,
            "nothing after the end",
            f"{len(bad)} event(s) after {describe(end)}",
            *_lines(bad, with_job=True),
        )


def _check_dag(report: Report, wf: str, state: WorkflowState, walks: dict[str, _JobWalk]) -> None:
    definition = state.definition
    assert definition is not None
    # Order: nothing is decided for a job before everything it needs has ended.
    for name, spec in definition.jobs.items():
        decided = walks[name].decided_seq
        if decided is None:
            continue
        # Jobs named only in a needs_at_least quorum may end after it is decided (actors.quorum).
        quorum = set(spec.needs_at_least.of) if spec.needs_at_least is not None else set()
        for up in spec.upstream:
            if up in quorum and up not in spec.needs and up not in spec.needs_any:
                continue
            ended = walks[up].terminal_seq
            if ended is None or ended > decided:
                report.add(
                    wf, name, "DAG order", f"decided at #{decided} before {up} ended (#{ended})"
                )
    ended_by_dag = not state.cancel_requested and not _timed_out(state)
    if not ended_by_dag or any(not state.job(n).status.is_terminal for n in state.order):
        return
    for name, spec in definition.jobs.items():
        current = state.job(name)
        verdict = dag.judge(
            spec, state.jobs, definition=definition, inputs=state.inputs, cancelled=False
        ).verdict
        if verdict is dag.Verdict.RUN:
            ok = current.status in (JobStatus.SUCCEEDED, JobStatus.FAILED) and (
                current.attempt >= 1 or current.status is JobStatus.FAILED
            )
        elif verdict is dag.Verdict.SKIP:
            ok = current.status is JobStatus.SKIPPED
        elif verdict is dag.Verdict.ERROR:
            ok = current.status is JobStatus.FAILED and current.attempt == 0
        else:
            ok = False
        if not ok:
            report.add(
                wf,
                name,
                "DAG outcome",
                f"{current.status} (attempt {current.attempt}) but its upstream's results "
                f"say {verdict}",
                *_job_statuses(state),
            )


def _timed_out(state: WorkflowState) -> bool:
    return state.status is WorkflowStatus.FAILED and (state.end_reason or "").startswith(
        "timed out"
    )


# --- one job --------------------------------------------------------------------------------------


@dataclass
class _JobWalk:
    decided_seq: int | None = None  # first JobQueued / JobSkipped / JobFailed(attempt 0)
    terminal_seq: int | None = None


def _check_job(
    report: Report,
    wf: str,
    name: str,
    records: Sequence[RecordedEvent],
    *,
    inline: bool = False,
) -> _JobWalk:
    walk = _JobWalk()
    state: JobState = job.pending(wf, name)
    terminal: list[RecordedEvent] = []
    claims: dict[tuple[int, int], RecordedEvent] = {}  # (attempt, dispatch_seq) -> last claim
    max_epoch = 0
    for record in records:
        event = record.event
        trail = _lines([r for r in records if r.seq <= record.seq])
        implied = implied_start(event) if isinstance(event, JobSucceeded | JobFailed) else None
        if implied is not None:  # a result that records its claim too: the claim first
            claim = replace(record, event=implied)
            max_epoch = _check_started(report, wf, name, state, claim, claims, trail, max_epoch)
            state = job.evolve(state, implied)
        match event:
            case JobQueued():
                _check_queued(report, wf, name, state, record, trail)
                if walk.decided_seq is None:
                    walk.decided_seq = record.seq
            case JobSkipped():
                if walk.decided_seq is None:
                    walk.decided_seq = record.seq
            case JobStarted():
                max_epoch = _check_started(
                    report, wf, name, state, record, claims, trail, max_epoch
                )
            case SubWorkflowStarted():
                if walk.decided_seq is None:
                    walk.decided_seq = record.seq
            case JobWaiting():
                if walk.decided_seq is None:
                    walk.decided_seq = record.seq
            case JobSucceeded() | JobFailed() if _settles_wait(state, event.epoch):
                pass  # the engine's: a signal or a webhook resumed the wait, or it timed out
            case JobLooped():
                terminal = []  # a new iteration: it may complete once more
            case JobFailed() if _loop_verdict(state, event):
                terminal = terminal[:-1]  # the engine's verdict on the iteration that ended
            case JobSleepStarted():
                if walk.decided_seq is None:
                    walk.decided_seq = record.seq
            case JobSucceeded() if inline and _inline_result(state, event):
                # A set or sleep job: the engine decides its result; no lease is involved.
                if walk.decided_seq is None:
                    walk.decided_seq = record.seq
            case JobSucceeded():
                if not _holds_lease(state, event.epoch):
                    report.add(
                        wf,
                        name,
                        "fenced results",
                        f"success of epoch {event.epoch} counted while {_held(state)}",
                        *trail,
                    )
            case JobFailed():
                if event.attempt == 0:
                    if state.status is not JobStatus.PENDING:
                        report.add(
                            wf,
                            name,
                            "fenced results",
                            f"failed before it was queued, but the job is {state.status}",
                            *trail,
                        )
                    walk.decided_seq = walk.decided_seq or record.seq
                elif not _holds_lease(state, event.epoch):
                    report.add(
                        wf,
                        name,
                        "fenced results",
                        f"failure of epoch {event.epoch} counted while {_held(state)}",
                        *trail,
                    )
            case JobResultRejected():
                report.rejections += 1
                if not 1 <= event.epoch <= state.epoch or _holds_lease(state, event.epoch):
                    report.add(
                        wf,
                        name,
                        "rejections name a stale epoch",
                        f"rejected epoch {event.epoch} while {_held(state)}",
                        *trail,
                    )
        was_terminal = state.status.is_terminal
        assert isinstance(event, JobEvent)
        state = job.evolve(state, event)
        if state.status.is_terminal and not was_terminal:
            terminal.append(record)
            walk.terminal_seq = walk.terminal_seq or record.seq
        elif was_terminal and isinstance(
            event, JobSucceeded | JobFailed | JobSkipped | JobCancelled
        ):
            terminal.append(record)
    if len(terminal) > 1:
        succeeded = sum(isinstance(r.event, JobSucceeded) for r in terminal)
        what = "completed twice" if succeeded > 1 else "ended twice"
        report.add(wf, name, "completed at most once", what, *_lines(list(records)))
    return walk


def _check_queued(
    report: Report,
    wf: str,
    name: str,
    state: JobState,
    record: RecordedEvent,
    trail: list[str],
) -> None:
    event = record.event
    assert isinstance(event, JobQueued)
    if event.attempt == 1 and state.status is JobStatus.PENDING:
        return
    looped = state.status is JobStatus.PENDING and state.iteration > 1  # after ``JobLooped``
    if state.status is JobStatus.PARKED and (event.attempt, event.poll_count) == (
        state.attempt,
        state.poll_count,
    ):
        return  # its callback queued the parked attempt again (``actors.parking``)
    if looped and event.attempt == state.attempt + 1:
        return
    if state.status is JobStatus.RETRYING and event.attempt == state.attempt + 1:
        report.retries += 1
        policy = state.retry
        tried = event.attempt - event.attempt_base  # a loop's iteration has its own budget
        if state.on_failure is not OnFailure.RETRY_FOREVER and tried > policy.max_attempts:
            report.add(
                wf,
                name,
                "retries",
                f"attempt {tried} beyond max_attempts {policy.max_attempts}",
                *trail,
            )
        return
    report.add(
        wf,
        name,
        "queued once per attempt",
        f"attempt {event.attempt} queued while the job is {state.status} (attempt {state.attempt})",
        *trail,
    )


def _check_started(
    report: Report,
    wf: str,
    name: str,
    state: JobState,
    record: RecordedEvent,
    claims: dict[tuple[int, int], RecordedEvent],
    trail: list[str],
    max_epoch: int,
) -> int:
    """Check a claim (a ``JobStarted``, or the one a result carries); the highest epoch since."""
    event = record.event
    assert isinstance(event, JobStarted)
    if event.epoch <= max_epoch:
        report.add(
            wf, name, "epochs increase", f"epoch {event.epoch} after epoch {max_epoch}", *trail
        )
    _check_claim(report, wf, name, state, record, event, claims, trail)
    return max(max_epoch, event.epoch)


def _check_claim(
    report: Report,
    wf: str,
    name: str,
    state: JobState,
    record: RecordedEvent,
    event: JobStarted,
    claims: dict[tuple[int, int], RecordedEvent],
    trail: list[str],
) -> None:
    report.executions += 1
    key = (event.attempt, event.dispatch_seq)
    if state.status is JobStatus.QUEUED and event.attempt == state.attempt:
        claims[key] = record
        return
    redelivered = (
        state.status is JobStatus.RUNNING
        and event.attempt == state.attempt
        and event.dispatch_seq == state.dispatch_seq
        and event.delivery > state.delivery
    )
    if redelivered:
        report.re_executions += 1
        previous = claims.get(key)
        if previous is not None:
            assert isinstance(previous.event, JobStarted)
            gap = (event.started_at - previous.event.started_at).total_seconds()
            report.redelivery_gaps.append(gap)
        claims[key] = record
        return
    report.add(
        wf,
        name,
        "executions explained",
        f"claim of attempt {event.attempt} (dispatch {event.dispatch_seq}, delivery "
        f"{event.delivery}) while the job is {state.status} (attempt {state.attempt}, "
        f"dispatch {state.dispatch_seq}, delivery {state.delivery})",
        *trail,
    )


def _settles_wait(state: JobState, epoch: int) -> bool:
    """A ``wait_for`` job's end, decided by the engine while it waits (no worker holds it)."""
    return state.status is JobStatus.WAITING and epoch == state.epoch


def _loop_verdict(state: JobState, event: JobFailed) -> bool:
    """A ``loop:`` job's failure at ``max_iterations`` (or an unreadable ``until``): decided by
    the engine on the iteration that has just succeeded, under that iteration's epoch."""
    return (
        state.status is JobStatus.SUCCEEDED
        and event.epoch == state.epoch
        and event.worker_id is None
        and not event.retryable
    )


def _inline_result(state: JobState, event: JobSucceeded) -> bool:
    """A ``set`` job's result (decided from pending) or a sleep's end (decided while it sleeps),
    both by the engine (``actors.inline_steps``)."""
    if event.worker_id is not None or event.epoch != state.epoch:
        return False
    sleeping = state.status is JobStatus.QUEUED and state.sleep_until is not None
    return state.status is JobStatus.PENDING or sleeping


def _holds_lease(state: JobState, epoch: int) -> bool:
    return state.status is JobStatus.RUNNING and epoch == state.epoch


def _held(state: JobState) -> str:
    return f"the job is {state.status} with epoch {state.epoch}"


def _lines(records: Sequence[RecordedEvent], *, with_job: bool = False) -> list[str]:
    lines = []
    for record in records:
        line = describe(record)
        if with_job and isinstance(record.event, JobEvent):
            line = f"{record.event.job}: {line}"
        lines.append(line)
    return lines


def _job_statuses(state: WorkflowState) -> list[str]:
    return [f"{n}: {state.job(n).status} (attempt {state.job(n).attempt})" for n in state.order]


# --- command line ---------------------------------------------------------------------------------


async def _main(url: str) -> int:
    from events.connection import NatsSettings, connect

    nc = await connect(NatsSettings(url=url, name="invariants"))
    try:
        report = await check_log(EventStore(nc))
    finally:
        await nc.close()
    for violation in report.violations[:50]:
        print(violation)
    print(report.summary())
    return 0 if report.ok else 1


def _parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nats", required=True, help="server URL(s), comma-separated")
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(_main(_parse().nats)))
