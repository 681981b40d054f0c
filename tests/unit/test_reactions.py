"""What the owner of a workflow decides for a batch of items (``reactions.react``), with no I/O.

Given the workflow's recorded history, when these items arrive, then these events are decided,
these timers armed, these appends made in these stages.
"""

from __future__ import annotations

from datetime import timedelta

from actors import workflow
from actors.engine.reactions import (
    JOB_TIMEOUT_GRACE,
    Cancel,
    Fired,
    Item,
    Reaction,
    Start,
    react,
    stages,
)
from actors.engine.timers import JobTimeoutTimer, RetryTimer, WorkflowTimeoutTimer
from actors.workflow import WorkflowState
from events import subjects
from events.base import Event, RecordedEvent
from events.catalog import (
    JobFailed,
    JobQueued,
    JobRetryScheduled,
    JobSpec,
    JobStarted,
    JobSucceeded,
)
from events.definition import RetryPolicy
from events.requests import CancelRequest, StartRequest
from tests.unit.given_when_then import T0, at
from tests.unit.test_workflow_actor import WF, dag, kinds, started


class History:
    """A workflow's log as the owner knows it: events with their sequences."""

    def __init__(self, *events: Event) -> None:
        self.log: list[RecordedEvent] = []
        self.add(*events)

    def add(self, *events: Event) -> list[RecordedEvent]:
        new = [
            RecordedEvent(len(self.log) + i, event.subject(), T0, event)  # type: ignore[attr-defined]
            for i, event in enumerate(events, start=1)
        ]
        self.log += new
        return new

    @property
    def state(self) -> WorkflowState:
        return workflow.replay(self.log)


def start_item(definition_jobs: dict[str, dict[str, object]]) -> Start:
    definition = dag(**definition_jobs)  # type: ignore[arg-type]
    return Start(StartRequest(workflow_id=WF, definition={}), definition)


def queued(job: str, attempt: int = 1, **spec: object) -> JobQueued:
    return JobQueued(
        workflow_id=WF,
        job=job,
        attempt=attempt,
        spec=JobSpec(run=f"./{job}", **spec),  # type: ignore[arg-type]
        retry=RetryPolicy(max_attempts=3, delay=2.0),
        queued_at=T0,
    )


def succeeded(job: str, epoch: int = 1) -> JobSucceeded:
    return JobSucceeded(workflow_id=WF, job=job, attempt=1, epoch=epoch, ended_at=at(1))


def when(state: WorkflowState, *items: Item, now: float = 2) -> Reaction:
    return react(state, list(items), at(now))


def test_a_start_and_the_jobs_it_queues_are_one_decision() -> None:
    reaction = when(
        WorkflowState(workflow_id=WF), start_item({"a": {}, "b": {}, "c": {"needs": ("a",)}})
    )
    assert kinds(reaction.decided) == [
        ("WorkflowStarted", "wf"),
        ("JobQueued", "a"),
        ("JobQueued", "b"),
    ]
    assert reaction.created == {0: True}
    plan = reaction.stages(WorkflowState(workflow_id=WF))
    # The workflow starts before its jobs are queued: two stages, the jobs together.
    assert [[append.actor_filter for append in stage] for stage in plan] == [
        [subjects.workflow_actor_filter(WF)],
        [subjects.job_actor_filter(WF, "a"), subjects.job_actor_filter(WF, "b")],
    ]
    assert all(append.expected_last_seq == 0 for stage in plan for append in stage)


def test_starting_a_workflow_that_exists_decides_nothing() -> None:
    history = History(started(dag(a={})), queued("a"))
    reaction = when(history.state, start_item({"a": {}}))
    assert reaction.decided == []
    assert reaction.created == {0: False}


def test_a_result_and_the_job_it_makes_ready_are_one_decision() -> None:
    history = History(started(dag(a={}, b={"needs": ("a",)})), queued("a"))
    result = history.add(succeeded("a"))
    reaction = when(history.state, *result)  # the result is folded already: a takeover's read
    assert kinds(reaction.decided) == [("JobQueued", "b")]
    history = History(started(dag(a={}, b={"needs": ("a",)})), queued("a"))
    before = history.state
    result = history.add(succeeded("a"))
    reaction = when(before, *result)  # the result arrives: folded here
    assert kinds(reaction.decided) == [("JobQueued", "b")]
    assert reaction.state.job("a").last_seq == result[0].seq


def test_the_last_result_ends_the_workflow_with_the_actor_s_expected_sequence() -> None:
    history = History(started(dag(a={})), queued("a"))
    before = history.state
    reaction = when(before, *history.add(succeeded("a")))
    assert kinds(reaction.decided) == [("WorkflowSucceeded", "wf")]
    [[append]] = reaction.stages(reaction.state)
    assert append.expected_last_seq == 1  # WorkflowStarted


def test_a_retry_with_a_delay_arms_a_timer_and_without_one_is_queued_at_once() -> None:
    history = History(started(dag(a={})), queued("a"))
    before = history.state
    failed = JobFailed(
        workflow_id=WF, job="a", attempt=1, epoch=1, error="x", will_retry=True, ended_at=at(1)
    )
    retry = JobRetryScheduled(workflow_id=WF, job="a", attempt=2, delay=2.0, not_before=at(3))
    reaction = when(before, *history.add(failed, retry))
    assert reaction.decided == []
    assert reaction.timers == [RetryTimer(workflow_id=WF, job="a", attempt=2, due=at(3))]

    history = History(started(dag(a={})), queued("a"))
    before = history.state
    retry = JobRetryScheduled(workflow_id=WF, job="a", attempt=2, delay=0.0, not_before=at(1))
    reaction = when(before, *history.add(failed, retry))
    assert kinds(reaction.decided) == [("JobQueued", "a")]
    assert reaction.decided[0].attempt == 2  # type: ignore[attr-defined]


def test_a_fired_retry_timer_queues_the_next_attempt_once() -> None:
    history = History(started(dag(a={})), queued("a"))
    failed = JobFailed(
        workflow_id=WF, job="a", attempt=1, epoch=1, error="x", will_retry=True, ended_at=at(1)
    )
    history.add(
        failed, JobRetryScheduled(workflow_id=WF, job="a", attempt=2, delay=2.0, not_before=at(3))
    )
    timer = RetryTimer(workflow_id=WF, job="a", attempt=2, due=at(3))
    # In process and from the stream: the second finds the attempt queued already.
    reaction = when(history.state, Fired(timer), Fired(timer, from_stream=True), now=3)
    assert kinds(reaction.decided) == [("JobQueued", "a")]


def test_a_job_timeout_is_armed_when_queued_and_looked_at_again_until_it_ran_too_long() -> None:
    definition = dag(a={"timeout": 10})
    reaction = when(
        WorkflowState(workflow_id=WF),
        Start(StartRequest(workflow_id=WF, definition={}), definition),
        now=0,
    )
    limit = timedelta(seconds=10) + JOB_TIMEOUT_GRACE
    assert reaction.timers == [
        JobTimeoutTimer(workflow_id=WF, job="a", attempt=1, due=at(0) + limit)
    ]
    history = History(*reaction.decided)
    timer = reaction.timers[0]
    # Still queued when it fires: look again a whole timeout later.
    again = when(history.state, Fired(timer), now=20)
    assert again.decided == []
    assert again.timers == [timer.model_copy(update={"due": at(20) + limit})]
    # Claimed at 18: due at 18 + limit, not before.
    started_ = JobStarted(
        workflow_id=WF, job="a", attempt=1, epoch=1, worker_id="w", lease_ttl=30, started_at=at(18)
    )
    history.add(started_)
    later = when(history.state, Fired(again.timers[0]), now=30)
    assert later.decided == []
    assert later.timers[0].due == at(18) + limit
    timed_out = when(history.state, Fired(later.timers[0]), now=33.1)
    assert kinds(timed_out.decided) == [("JobFailed", "a"), ("WorkflowFailed", "wf")]
    assert timed_out.decided[0].timed_out  # type: ignore[attr-defined]


def test_a_workflow_timeout_is_armed_at_its_start() -> None:
    definition = dag(a={}, timeout=60)
    reaction = when(
        WorkflowState(workflow_id=WF),
        Start(StartRequest(workflow_id=WF, definition={}), definition),
        now=0,
    )
    assert WorkflowTimeoutTimer(workflow_id=WF, due=T0 + timedelta(seconds=60)) in reaction.timers


def test_cancelling_a_workflow_that_never_started_is_reported_not_raised() -> None:
    reaction = when(WorkflowState(workflow_id=WF), Cancel(CancelRequest(workflow_id=WF)))
    assert reaction.unknown == [0]
    assert reaction.decided == []


def test_a_cancel_withdraws_queued_jobs_and_ends_the_workflow_in_one_decision() -> None:
    history = History(started(dag(a={}, b={"needs": ("a",)})), queued("a"))
    reaction = when(history.state, Cancel(CancelRequest(workflow_id=WF, reason="stop")))
    assert kinds(reaction.decided) == [
        ("WorkflowCancelRequested", "wf"),
        ("JobCancelled", "a"),
        ("JobCancelled", "b"),
        ("WorkflowCancelled", "wf"),
    ]
    plan = reaction.stages(history.state)
    assert [len(stage) for stage in plan] == [1, 2, 1]  # wf | a, b | wf
    # A worker may be running "a" before its claim is appended (claim_window): told to look.
    assert reaction.cancel_notices == ["a", "b"]


def test_a_result_that_ends_nothing_elsewhere_pushes_no_notice() -> None:
    history = History(started(dag(a={}, b={"needs": ("a",)})), queued("a"))
    before = history.state
    result = history.add(succeeded("a"))
    reaction = when(before, *result)
    assert kinds(reaction.decided) == [("JobQueued", "b")]
    assert reaction.cancel_notices == []


def test_stages_put_the_workflow_actor_alone_between_runs_of_jobs() -> None:
    state = History(started(dag(a={}, b={}))).state
    events: list[Event] = [queued("a"), queued("b")]
    plan = stages(state, events)
    assert [len(stage) for stage in plan] == [2]
