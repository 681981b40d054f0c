"""An operator's retry of an ended workflow (``actors.control``), as given / when / then: which
jobs run again, what keeps its result, how the new attempts are fenced, what is refused."""

from __future__ import annotations

from typing import Any

from actors import workflow
from actors.workflow import WorkflowState
from events.catalog import (
    JobCancelled,
    JobQueued,
    JobReopened,
    JobSkipped,
    WorkflowCancelled,
    WorkflowCancelRequested,
    WorkflowFailed,
    WorkflowRetried,
    WorkflowStatus,
    WorkflowSucceeded,
)
from events.errors import CommandRefused
from tests.unit.given_when_then import at
from tests.unit.test_control import (
    CHAIN,
    FORK,
    advance,
    failed,
    ok,
    queued,
    retry,
    running,
)
from tests.unit.test_workflow_actor import WF, WFA, dag, kinds, started


def _failed_chain() -> list[Any]:
    """a succeeded, b failed, c skipped because of b: the workflow failed."""
    return [
        started(CHAIN),
        queued("a"),
        ok("a", out="kept"),
        queued("b"),
        running("b"),
        failed("b"),
        JobSkipped(workflow_id=WF, job="c", reason="needs b, which failed", at=at(2)),
        WorkflowFailed(workflow_id=WF, reason="1 job(s) failed: b", ended_at=at(3)),
    ]


def test_retrying_a_failed_workflow_reopens_the_failed_jobs_and_those_skipped_below() -> None:
    state = (
        WFA.given(*_failed_chain())
        .when(retry(reason="fixed the key", request_id="r9"))
        .then(
            WorkflowRetried(
                workflow_id=WF,
                by="ops",
                reason="fixed the key",
                request_id="r9",
                jobs=("b", "c"),
                at=at(20),
            ),
            JobReopened(workflow_id=WF, job="b", by="ops", at=at(20)),
            JobReopened(workflow_id=WF, job="c", by="ops", at=at(20)),
        )
    )
    assert state.status is WorkflowStatus.RUNNING and state.end_reason is None
    assert state.job("a").outputs == {"out": "kept"}  # a success keeps its outputs
    # b runs again as a new attempt, its claim fenced past the old epoch.
    [b] = workflow.decide(state, advance(21))
    assert isinstance(b, JobQueued) and b.job == "b"
    assert (b.attempt, b.prior_epoch) == (2, 1)
    assert b.spec.upstream_outputs == {"a": {"out": "kept"}}


def test_a_retried_run_ends_by_its_own_results() -> None:
    state = WFA.given(*_failed_chain()).when(retry()).state_after()
    for event in [queued("b", 2, 1), running("b", 2, 2), ok("b", 2)]:
        state = workflow.evolve(state, event)
    [c] = workflow.decide(state, advance(22))
    assert isinstance(c, JobQueued) and (c.job, c.attempt) == ("c", 1)
    for event in [c, running("c"), ok("c")]:
        state = workflow.evolve(state, event)
    assert kinds(workflow.decide(state, advance(23))) == [("WorkflowSucceeded", "wf")]


def test_retrying_a_cancelled_workflow_forgets_the_cancellation() -> None:
    given = WFA.given(
        started(FORK),
        queued("a"),
        queued("b"),
        running("a"),
        ok("a"),
        WorkflowCancelRequested(workflow_id=WF, reason="oops", requested_at=at(3)),
        JobCancelled(workflow_id=WF, job="b", reason="oops", at=at(3)),
        JobCancelled(workflow_id=WF, job="c", reason="oops", at=at(3)),
        WorkflowCancelled(workflow_id=WF, reason="oops", ended_at=at(3)),
    )
    state = given.when(retry()).state_after()
    assert not state.cancel_requested
    assert kinds(workflow.decide(state, advance(21))) == [("JobQueued", "b"), ("JobQueued", "c")]


def test_a_job_skipped_by_its_own_condition_keeps_its_skip() -> None:
    definition = dag(a={}, b={}, c={"if": "inputs.never"})
    given = WFA.given(
        started(definition),
        queued("a"),
        queued("b"),
        JobSkipped(workflow_id=WF, job="c", reason="condition is false", at=at(1)),
        ok("a"),
        failed("b"),
        WorkflowFailed(workflow_id=WF, reason="1 job(s) failed: b", ended_at=at(3)),
    )
    [retried, *_] = given.when(retry()).events()
    assert isinstance(retried, WorkflowRetried) and retried.jobs == ("b",)


def test_retrying_a_running_workflow_is_refused() -> None:
    WFA.given(started(CHAIN), queued("a")).when(retry()).then_raises(
        CommandRefused,
        "cannot retry workflow 'wf-1': it is running; only a failed or cancelled workflow",
    )


def test_retrying_a_succeeded_workflow_is_refused() -> None:
    WFA.given(
        started(dag(a={})), queued("a"), ok("a"), WorkflowSucceeded(workflow_id=WF, ended_at=at(3))
    ).when(retry()).then_raises(CommandRefused, "it succeeded")


def test_retrying_while_a_job_still_stops_is_refused() -> None:
    timed_out = WorkflowFailed(workflow_id=WF, reason="timed out", timed_out=True, ended_at=at(3))
    WFA.given(started(CHAIN), queued("a"), running("a"), timed_out).when(retry()).then_raises(
        CommandRefused, r"job\(s\) a have not stopped yet"
    )


def test_a_state_replayed_from_the_log_is_the_state_evolved() -> None:
    history = [*_failed_chain()]
    state = WFA.given(*history).when(retry()).state_after()
    replayed = workflow.replay([*history, *WFA.given(*history).when(retry()).events()])
    assert replayed == state
    assert isinstance(replayed, WorkflowState)
