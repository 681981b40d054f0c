"""The chaos checker (``tests/invariants.py``) on hand-made histories.

Valid histories (the golden ones and a few simulated runs) must pass with no violation; each
history broken on purpose must be caught by the invariant it breaks, naming the workflow, the job
and the sequences that show it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from actors.commands import CompleteJob
from events.base import Event, RecordedEvent
from events.catalog import (
    JobEvent,
    JobFailed,
    JobQueued,
    JobResultRejected,
    JobSkipped,
    JobStarted,
    JobSucceeded,
    WorkflowFailed,
    WorkflowSucceeded,
)
from events.definition import JobDefinition, OnFailure, RetryPolicy, WorkflowDefinition
from tests.invariants import Report, check_history
from tests.unit.given_when_then import at
from tests.unit.golden import load_golden
from tests.unit.simulation import Simulation


def _definition(jobs: dict[str, dict[str, Any]], **extra: Any) -> WorkflowDefinition:
    return WorkflowDefinition(
        name="t",
        jobs={n: JobDefinition(name=n, **{"run": "true", **kw}) for n, kw in jobs.items()},
        **extra,
    )


def _renumber(events: Sequence[Event | RecordedEvent]) -> list[RecordedEvent]:
    """The events as a fresh log: sequences 1..n in this order."""
    out = []
    for index, item in enumerate(events, start=1):
        event = item.event if isinstance(item, RecordedEvent) else item
        subject: str = event.subject()  # type: ignore[attr-defined]
        out.append(RecordedEvent(seq=index, subject=subject, time=at(index), event=event))
    return out


def _events(log: Sequence[RecordedEvent]) -> list[Event]:
    return [r.event for r in log]


def _find(log: Sequence[RecordedEvent], kind: type[Event], job: str | None = None) -> int:
    """Index of the first event of ``kind`` (of ``job``) in ``log``."""
    for index, record in enumerate(log):
        if isinstance(record.event, kind) and (job is None or _job_of(record.event) == job):
            return index
    raise AssertionError(f"no {kind.__name__} of {job}")


def _job_of(event: Event) -> str | None:
    return event.job if isinstance(event, JobEvent) else None


def _violated(report: Report) -> set[str]:
    return {v.invariant for v in report.violations}


# --- valid runs --------------------------------------------------------------------------------


def chain_run() -> Simulation:
    sim = Simulation(workflow_id="wf-chain3")
    sim.start(_definition({"a": {}, "b": {"needs": ("a",)}, "c": {"needs": ("b",)}}))
    sim.run()
    return sim


def retried_run() -> Simulation:
    """A job that fails once and is retried, a failing ``continue`` job, a fan-in."""
    sim = Simulation(workflow_id="wf-retry")
    definition = _definition(
        {
            "a": {"retry": RetryPolicy(max_attempts=3)},
            "b": {"on_failure": OnFailure.CONTINUE},
            "z": {"needs_any": ("a", "b")},
        }
    )
    sim.start(definition)
    sim.run({"a": ["fail", "ok"], "b": ["fatal"]})
    return sim


def failed_run() -> Simulation:
    sim = Simulation(workflow_id="wf-failed")
    sim.start(_definition({"a": {}, "b": {"needs": ("a",)}, "c": {"if": "always()"}}))
    sim.run({"a": ["fatal"]})
    return sim


def redelivered_run() -> Simulation:
    """A lease expires twice (delivery 1, 2, 3 of one dispatch); the stale holders' late results
    are rejected."""
    sim = Simulation(workflow_id="wf-redelivered")
    sim.start(_definition({"a": {}, "b": {"needs": ("a",)}}))
    sim.advance()
    sim.claim("a", worker="w1")
    sim.claim("a", worker="w2", delivery=2)
    sim.claim("a", worker="w3", delivery=3)
    sim.job("a", CompleteJob, epoch=1, worker_id="w1")
    sim.job("a", CompleteJob, epoch=3, worker_id="w3")
    sim.job("a", CompleteJob, epoch=2, worker_id="w2")
    sim.run()
    return sim


RUNS: dict[str, Callable[[], Simulation]] = {
    "chain": chain_run,
    "retried": retried_run,
    "failed": failed_run,
    "redelivered": redelivered_run,
}


@pytest.mark.parametrize(
    "name", ["release", "skip_chain", "fenced", "cancelled", "timed_out", "steps"]
)
def test_golden_histories_hold_every_invariant(name: str) -> None:
    report = check_history(load_golden(name)[0])
    assert report.violations == [], "\n".join(map(str, report.violations))
    assert report.workflows == 1


def test_simulated_runs_hold_every_invariant_and_are_counted() -> None:
    log = [record for make in RUNS.values() for record in make().log]
    report = check_history(_renumber(log), expected=[make().workflow_id for make in RUNS.values()])
    assert report.violations == [], "\n".join(map(str, report.violations))
    assert report.workflows == 4
    assert report.ends == {"succeeded": 3, "failed": 1}
    assert report.jobs == 3 + 3 + 3 + 2
    # chain 3, retried a twice + b + z, failed a + c, redelivered a three times + b
    assert report.executions == 3 + 4 + 2 + 4
    assert (report.re_executions, report.retries, report.rejections) == (2, 1, 2)
    assert "violations 0" in report.summary()


# --- broken on purpose ---------------------------------------------------------------------------


def test_a_lost_workflow_is_caught() -> None:
    report = check_history(chain_run().log, expected=["wf-chain3", "wf-never-seen"])
    assert [(v.invariant, v.workflow_id) for v in report.violations] == [("lost", "wf-never-seen")]


def test_a_workflow_that_never_ended_is_caught() -> None:
    log = chain_run().log
    cut = _find(log, JobSucceeded, "b")  # b still runs, c pending, no end
    report = check_history(log[:cut])
    assert _violated(report) == {"terminal", "ends once"}
    # Cut where the engine had work to do: a succeeded, b never queued.
    cut = _find(log, JobQueued, "b")
    assert "nothing left" in _violated(check_history(log[:cut]))


def test_a_job_completed_twice_is_caught() -> None:
    events = _events(chain_run().log)
    index = _find(_renumber(events), JobSucceeded, "b")
    again = events[index]
    assert isinstance(again, JobSucceeded)
    events.insert(index + 1, again.model_copy(update={"worker_id": "w-other"}))
    report = check_history(_renumber(events))
    assert "completed at most once" in _violated(report)
    (twice,) = [v for v in report.violations if v.invariant == "completed at most once"]
    assert (twice.workflow_id, twice.job, twice.detail) == ("wf-chain3", "b", "completed twice")
    assert any("JobSucceeded" in line for line in twice.evidence)


def test_a_success_and_a_final_failure_of_one_job_are_caught() -> None:
    events = _events(chain_run().log)
    index = _find(_renumber(events), JobSucceeded, "a")
    done = events[index]
    assert isinstance(done, JobSucceeded)
    failed = JobFailed(
        workflow_id=done.workflow_id, job="a", attempt=1, epoch=1, error="late", ended_at=at(0)
    )
    events.insert(index + 1, failed)
    report = check_history(_renumber(events))
    assert "completed at most once" in _violated(report)
    assert "fenced results" in _violated(report)  # counted though the job had ended


def test_a_second_execution_without_a_redelivery_is_caught() -> None:
    events = _events(chain_run().log)
    index = _find(_renumber(events), JobStarted, "b")
    claim = events[index]
    assert isinstance(claim, JobStarted)
    # Another claim of the same delivery (no lease expired): JetStream never handed it out again.
    events.insert(index + 1, claim.model_copy(update={"epoch": 2, "worker_id": "w-dup"}))
    report = check_history(_renumber(events))
    (unexplained,) = [v for v in report.violations if v.invariant == "executions explained"]
    assert unexplained.job == "b"
    assert "delivery 1" in unexplained.detail
    # And a claim from another dispatch message of the same attempt.
    events[index + 1] = claim.model_copy(update={"epoch": 2, "dispatch_seq": 99, "delivery": 2})
    assert "executions explained" in _violated(check_history(_renumber(events)))


def test_epochs_that_do_not_increase_are_caught() -> None:
    log = redelivered_run().log
    events = _events(log)
    index = [i for i, r in enumerate(log) if isinstance(r.event, JobStarted)][1]
    second = events[index]
    assert isinstance(second, JobStarted)
    events[index] = second.model_copy(update={"epoch": 1})
    assert "epochs increase" in _violated(check_history(_renumber(events)))


def test_a_rejection_of_the_lease_holder_is_caught() -> None:
    log = redelivered_run().log
    events = _events(log)
    index = _find(log, JobResultRejected, "a")
    rejected = events[index]
    assert isinstance(rejected, JobResultRejected)
    events[index] = rejected.model_copy(update={"epoch": 3})  # epoch 3 held the lease then
    report = check_history(_renumber(events))
    (wrong,) = [v for v in report.violations if v.invariant == "rejections name a stale epoch"]
    assert "rejected epoch 3" in wrong.detail
    events[index] = rejected.model_copy(update={"epoch": 7})  # never granted
    assert "rejections name a stale epoch" in _violated(check_history(_renumber(events)))


def test_a_result_from_a_stale_epoch_that_is_counted_is_caught() -> None:
    log = redelivered_run().log
    events = _events(log)
    index = _find(log, JobSucceeded, "a")
    done = events[index]
    assert isinstance(done, JobSucceeded) and done.epoch == 3
    events[index] = done.model_copy(update={"epoch": 2, "worker_id": "w2"})
    assert "fenced results" in _violated(check_history(_renumber(events)))


def test_a_wrong_end_is_caught() -> None:
    events = _events(failed_run().log)
    index = _find(_renumber(events), WorkflowFailed)
    end = events[index]
    events[index] = WorkflowSucceeded(workflow_id=end.workflow_id, ended_at=at(0))  # type: ignore[attr-defined]
    report = check_history(_renumber(events))
    (wrong,) = [v for v in report.violations if v.invariant == "correct end"]
    assert "expected WorkflowFailed" in wrong.detail
    # Failed, but naming the wrong jobs.
    assert isinstance(end, WorkflowFailed)
    events[index] = end.model_copy(update={"failed_jobs": ("b",)})
    report = check_history(_renumber(events))
    assert [v.invariant for v in report.violations] == ["correct end"]


def test_a_skip_that_the_dag_does_not_call_for_is_caught() -> None:
    events = _events(chain_run().log)
    log = _renumber(events)
    # c is skipped although b succeeded: drop c's run and record a skip in its place.
    start = _find(log, JobQueued, "c")
    end = _find(log, WorkflowSucceeded)
    skipped = JobSkipped(workflow_id="wf-chain3", job="c", reason="made up", at=at(0))
    events = [*events[:start], skipped, *events[end:]]
    report = check_history(_renumber(events))
    (outcome,) = [v for v in report.violations if v.invariant == "DAG outcome"]
    assert outcome.job == "c" and "say run" in outcome.detail


def test_a_job_queued_before_its_upstream_ended_is_caught() -> None:
    events = _events(chain_run().log)
    log = _renumber(events)
    queued_b = events.pop(_find(log, JobQueued, "b"))
    events.insert(_find(log, JobStarted, "a"), queued_b)  # before a ran at all
    report = check_history(_renumber(events))
    assert "DAG order" in _violated(report)


def test_retries_beyond_the_policy_and_double_queues_are_caught() -> None:
    log = retried_run().log
    events = _events(log)
    index = next(
        i for i, r in enumerate(log) if isinstance(r.event, JobQueued) and r.event.attempt == 2
    )
    queued = events[index]
    assert isinstance(queued, JobQueued) and queued.attempt == 2
    events[index] = queued.model_copy(update={"retry": RetryPolicy(max_attempts=1)})
    # The policy in force is the one the failed attempt was queued with (3): patch that too.
    first = _find(log, JobQueued, "a")
    first_queued = events[first]
    assert isinstance(first_queued, JobQueued)
    events[first] = first_queued.model_copy(update={"retry": RetryPolicy(max_attempts=1)})
    assert "retries" in _violated(check_history(_renumber(events)))

    events = _events(log)
    events.insert(first + 1, first_queued)  # attempt 1 queued twice
    assert "queued once per attempt" in _violated(check_history(_renumber(events)))


def test_work_after_the_end_is_caught_but_late_rejections_are_not() -> None:
    log = chain_run().log
    events = _events(log)
    claim = events[_find(log, JobStarted, "c")]
    assert isinstance(claim, JobStarted)
    late = JobResultRejected(
        workflow_id="wf-chain3", job="c", attempt=1, epoch=1, worker_id="w-late",
        outcome="succeeded", reason="the job is already succeeded", at=at(0),
    )  # fmt: skip
    assert check_history(_renumber([*events, late])).ok
    assert not check_history(_renumber([*events, late.model_copy(update={"epoch": 0})])).ok
    restarted = claim.model_copy(update={"epoch": 2, "delivery": 2})
    report = check_history(_renumber([*events, restarted]))
    assert "nothing after the end" in _violated(report)


def test_a_second_start_and_orphan_events_are_caught() -> None:
    events = _events(chain_run().log)
    assert "started once" in _violated(check_history(_renumber([events[0], *events])))
    orphans = check_history(_renumber(events[1:]))  # job events with no WorkflowStarted
    assert "started once" in _violated(orphans)
    assert orphans.ends == {"never started": 1}
