"""An operator's rerun of an ended workflow from a job (``actors.control``), as given / when /
then: which jobs run again, what keeps its result, what the new attempts read, what is refused."""

from __future__ import annotations

from typing import Any

from actors import workflow
from actors.commands import RerunWorkflow
from events.catalog import (
    JobQueued,
    JobReopened,
    WorkflowCancelled,
    WorkflowCancelRequested,
    WorkflowFailed,
    WorkflowRerun,
    WorkflowStatus,
    WorkflowSucceeded,
)
from events.errors import CommandRefused, WorkflowNotFound
from tests.unit.given_when_then import at
from tests.unit.test_control import advance, failed, ok, pause, queued, running
from tests.unit.test_workflow_actor import WF, WFA, dag, kinds, started

# a -> b -> d, and c needs_any of b; e stands apart.
DIAMOND = dag(
    a={},
    b={"needs": ("a",)},
    c={"needs_any": ("b", "e")},
    d={"needs": ("c",)},
    e={},
)


def rerun(job: str, **kw: Any) -> RerunWorkflow:
    return RerunWorkflow(workflow_id=WF, job=job, by="ops", now=at(20), **kw)


def _succeeded() -> list[Any]:
    history: list[Any] = [started(DIAMOND)]
    for name in ("a", "e", "b", "c", "d"):
        history += [queued(name), running(name), ok(name, out=f"{name}1")]
    return [*history, WorkflowSucceeded(workflow_id=WF, ended_at=at(3))]


def test_rerunning_from_a_job_reopens_it_and_everything_downstream() -> None:
    state = (
        WFA.given(*_succeeded())
        .when(rerun("b", reason="new data", request_id="r7"))
        .then(
            WorkflowRerun(
                workflow_id=WF,
                by="ops",
                reason="new data",
                request_id="r7",
                from_job="b",
                jobs=("b", "c", "d"),
                at=at(20),
            ),
            JobReopened(workflow_id=WF, job="b", by="ops", at=at(20)),
            JobReopened(workflow_id=WF, job="c", by="ops", at=at(20)),
            JobReopened(workflow_id=WF, job="d", by="ops", at=at(20)),
        )
    )
    assert state.status is WorkflowStatus.RUNNING and state.ended_at is None
    # Upstream and unrelated jobs keep their outputs; the reopened ones forget theirs.
    assert state.job("a").outputs == {"out": "a1"} and state.job("e").outputs == {"out": "e1"}
    assert state.job("b").outputs == {}
    [b] = workflow.decide(state, advance(21))
    assert isinstance(b, JobQueued) and (b.job, b.attempt, b.prior_epoch) == ("b", 2, 1)
    assert b.spec.upstream_outputs == {"a": {"out": "a1"}}


def test_downstream_jobs_of_a_rerun_read_the_new_outputs() -> None:
    state = WFA.given(*_succeeded()).when(rerun("b")).state_after()
    for event in [queued("b", 2, 1), running("b", 2, 2), ok("b", 2, out="b2")]:
        state = workflow.evolve(state, event)
    [c] = workflow.decide(state, advance(22))
    assert isinstance(c, JobQueued) and c.job == "c" and c.attempt == 2
    assert c.spec.upstream_outputs["b"] == {"out": "b2"}
    for event in [c, running("c", 2, 2), ok("c", 2, out="c2")]:
        state = workflow.evolve(state, event)
    [d] = workflow.decide(state, advance(23))
    assert isinstance(d, JobQueued) and d.spec.upstream_outputs == {"c": {"out": "c2"}}
    for event in [d, running("d", 2, 2), ok("d", 2)]:
        state = workflow.evolve(state, event)
    assert kinds(workflow.decide(state, advance(24))) == [("WorkflowSucceeded", "wf")]


def test_rerunning_from_a_leaf_reopens_it_alone() -> None:
    [rerun_event, *reopened] = WFA.given(*_succeeded()).when(rerun("d")).events()
    assert isinstance(rerun_event, WorkflowRerun) and rerun_event.jobs == ("d",)
    assert kinds(reopened) == [("JobReopened", "d")]


def test_rerunning_a_failed_workflow_from_a_job_above_the_failure() -> None:
    chain = dag(a={}, b={"needs": ("a",)})
    history = [
        started(chain),
        queued("a"),
        running("a"),
        ok("a", out="1"),
        queued("b"),
        running("b"),
        failed("b"),
        WorkflowFailed(workflow_id=WF, reason="1 job(s) failed: b", ended_at=at(3)),
    ]
    state = WFA.given(*history).when(rerun("a")).state_after()
    assert state.status is WorkflowStatus.RUNNING
    assert kinds(workflow.decide(state, advance(21))) == [("JobQueued", "a")]


def test_rerunning_a_cancelled_workflow_forgets_the_cancellation() -> None:
    history = [
        *_succeeded()[:-1],
        WorkflowCancelRequested(workflow_id=WF, reason="oops", requested_at=at(3)),
        WorkflowCancelled(workflow_id=WF, reason="oops", ended_at=at(3)),
    ]
    state = WFA.given(*history).when(rerun("d")).state_after()
    assert not state.cancel_requested and state.end_reason is None
    assert kinds(workflow.decide(state, advance(21))) == [("JobQueued", "d")]


def test_rerunning_a_running_workflow_is_refused() -> None:
    WFA.given(started(DIAMOND), queued("a")).when(rerun("a")).then_raises(
        CommandRefused,
        "cannot rerun workflow 'wf-1': it is running; only an ended workflow can be rerun",
    )


def test_rerunning_a_paused_workflow_is_refused() -> None:
    paused = WFA.given(started(DIAMOND), queued("a")).when(pause()).events()
    WFA.given(started(DIAMOND), queued("a"), *paused).when(rerun("a")).then_raises(
        CommandRefused, "it is paused; only an ended workflow can be rerun"
    )


def test_rerunning_from_an_unknown_job_is_refused() -> None:
    WFA.given(*_succeeded()).when(rerun("zz")).then_raises(
        CommandRefused, r"it has no job 'zz' \(its jobs: a, b, c, d, e\)"
    )


def test_rerunning_a_workflow_never_started_is_refused() -> None:
    WFA.given().when(rerun("a")).then_raises(WorkflowNotFound)


def test_rerunning_while_a_job_still_stops_is_refused() -> None:
    timed_out = WorkflowFailed(workflow_id=WF, reason="timed out", timed_out=True, ended_at=at(3))
    WFA.given(started(DIAMOND), queued("a"), running("a"), timed_out).when(rerun("a")).then_raises(
        CommandRefused, r"job\(s\) a have not stopped yet; rerun once they have"
    )


def test_a_redelivered_rerun_changes_nothing() -> None:
    given = WFA.given(*_succeeded())
    events = given.when(rerun("b", request_id="r7")).events()
    WFA.given(*_succeeded(), *events).when(rerun("b", request_id="r7")).then_nothing()


def test_a_rerun_state_replayed_from_the_log_is_the_state_evolved() -> None:
    given = WFA.given(*_succeeded())
    state = given.when(rerun("b")).state_after()
    assert workflow.replay([*_succeeded(), *given.when(rerun("b")).events()]) == state
