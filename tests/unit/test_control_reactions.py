"""What the owner of a workflow decides for an operator's requests (``reactions.react``), no I/O:
what is answered, what a pause holds back (retries, the timeout) and what the resume releases."""

from __future__ import annotations

from actors.engine.reactions import Control, Fired, react
from actors.engine.timers import RetryTimer, WorkflowTimeoutTimer
from actors.workflow import WorkflowState
from events.catalog import JobFailed, JobRetryScheduled, WorkflowFailed, WorkflowPaused
from events.requests import PauseRequest, ResumeRequest, RetryRequest, SkipRequest
from tests.unit.given_when_then import at
from tests.unit.test_reactions import History, queued
from tests.unit.test_workflow_actor import WF, dag, kinds, started


def paused() -> WorkflowPaused:
    return WorkflowPaused(workflow_id=WF, by="ops", at=at(1))


def failed_with_retry(delay: float) -> tuple[JobFailed, JobRetryScheduled]:
    return (
        JobFailed(
            workflow_id=WF, job="a", attempt=1, epoch=1, error="x", will_retry=True, ended_at=at(2)
        ),
        JobRetryScheduled(
            workflow_id=WF, job="a", attempt=2, delay=delay, not_before=at(2 + delay)
        ),
    )


def test_a_pause_is_applied_and_answered_a_refusal_is_reported() -> None:
    history = History(started(dag(a={}, b={"needs": ("a",)})), queued("a"))
    reaction = react(
        history.state,
        [
            Control(PauseRequest(workflow_id=WF, by="ops", reason="look")),
            Control(SkipRequest(workflow_id=WF, job="zzz")),
            Control(PauseRequest(workflow_id=WF)),
        ],
        at(3),
    )
    assert kinds(reaction.decided) == [("WorkflowPaused", "wf")]
    assert reaction.applied == {0: True, 2: False}  # the second pause found it paused
    assert reaction.refused == {
        1: "cannot skip workflow 'wf-1': it has no job 'zzz' (its jobs: a, b)"
    }


def test_a_control_request_for_an_unknown_workflow_is_not_found() -> None:
    reaction = react(WorkflowState(workflow_id=WF), [Control(ResumeRequest(workflow_id=WF))], at(1))
    assert reaction.unknown == [0] and reaction.decided == []


def test_a_retry_without_delay_waits_while_paused() -> None:
    history = History(started(dag(a={})), queued("a"), paused())
    before = history.state
    reaction = react(before, history.add(*failed_with_retry(0)), at(3))
    assert reaction.decided == []


def test_a_retry_timer_firing_while_paused_queues_nothing() -> None:
    history = History(started(dag(a={})), queued("a"), paused(), *failed_with_retry(2))
    timer = RetryTimer(workflow_id=WF, job="a", attempt=2, due=at(4))
    assert react(history.state, [Fired(timer, from_stream=True)], at(4)).decided == []


def test_the_resume_queues_the_retries_that_fell_due_while_paused() -> None:
    history = History(started(dag(a={}, b={})), queued("a"), queued("b"), paused())
    history.add(*failed_with_retry(2))  # a's retry was due at 4
    reaction = react(history.state, [Control(ResumeRequest(workflow_id=WF))], at(10))
    assert kinds(reaction.decided) == [("WorkflowResumed", "wf"), ("JobQueued", "a")]
    assert reaction.decided[1].attempt == 2  # type: ignore[attr-defined]


def test_the_resume_leaves_a_retry_not_due_yet_to_its_timer() -> None:
    history = History(started(dag(a={}, b={})), queued("a"), queued("b"), paused())
    history.add(*failed_with_retry(60))
    reaction = react(history.state, [Control(ResumeRequest(workflow_id=WF))], at(10))
    assert kinds(reaction.decided) == [("WorkflowResumed", "wf")]


def test_a_resume_past_the_deadline_times_the_workflow_out() -> None:
    history = History(started(dag(a={}, timeout=30)), queued("a"), paused())
    reaction = react(history.state, [Control(ResumeRequest(workflow_id=WF))], at(45))
    assert kinds(reaction.decided) == [
        ("WorkflowResumed", "wf"),
        ("WorkflowFailed", "wf"),
        ("JobCancelled", "a"),
    ]
    assert reaction.decided[1].timed_out  # type: ignore[attr-defined]


def test_a_retry_queues_the_reopened_jobs_and_arms_a_timeout_of_its_own() -> None:
    history = History(
        started(dag(a={}, timeout=30)),
        queued("a"),
        JobFailed(workflow_id=WF, job="a", attempt=1, epoch=1, error="x", ended_at=at(2)),
        WorkflowFailed(workflow_id=WF, reason="1 job(s) failed: a", ended_at=at(2)),
    )
    reaction = react(history.state, [Control(RetryRequest(workflow_id=WF, by="ops"))], at(50))
    assert kinds(reaction.decided) == [
        ("WorkflowRetried", "wf"),
        ("JobReopened", "a"),
        ("JobQueued", "a"),
    ]
    assert WorkflowTimeoutTimer(workflow_id=WF, due=at(80), run=1) in reaction.timers
    # The reopening and the new attempt of one job are one append, after the workflow's.
    stages = reaction.stages(history.state)
    assert [len(stage) for stage in stages] == [1, 1]
    assert [e.event_type for e in stages[1][0].events] == ["JobReopened", "JobQueued"]
