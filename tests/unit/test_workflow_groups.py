"""Workflow concurrency groups, no I/O: the actor's given/when/then (queued, admitted, cancelled
while queued, timed out while queued, retried), the queue's rules (order, limit, cancel_in_progress)
and what the owner's reaction asks of the group (enter, leave, look again)."""

from __future__ import annotations

import pytest

from actors import group_queue, groups
from actors.commands import AdmitWorkflow, Advance, CancelWorkflow, PauseWorkflow, TimeoutWorkflow
from actors.engine.reactions import Admit, Fired, react
from actors.engine.timers import GroupTimer
from actors.group_queue import GroupQueue, Member
from events.catalog import (
    JobCancelled,
    JobQueued,
    JobSucceeded,
    WorkflowAdmitted,
    WorkflowCancelled,
    WorkflowCancelRequested,
    WorkflowFailed,
    WorkflowQueued,
    WorkflowRetried,
    WorkflowStarted,
    WorkflowStatus,
    WorkflowSucceeded,
)
from events.definition import Concurrency, InputSpec, RateLimit, WorkflowDefinition
from events.errors import CommandRefused
from events.requests import AdmitRequest
from tests.unit.given_when_then import at
from tests.unit.test_reactions import History
from tests.unit.test_workflow_actor import WF, WFA, dag, kinds

GROUP = Concurrency(group="deploy-${{ inputs.env }}", limit=1)


def grouped(concurrency: Concurrency = GROUP, timeout: float | None = None) -> WorkflowDefinition:
    base = dag(a={}, timeout=timeout, inputs={"env": InputSpec(default="prod")})
    return base.model_copy(update={"concurrency": concurrency})


def started(definition: WorkflowDefinition | None = None) -> WorkflowStarted:
    return WorkflowStarted(
        workflow_id=WF, definition=definition or grouped(), inputs={"env": "prod"}, started_at=at(0)
    )


def queued(run: int = 0, at_s: float = 1) -> WorkflowQueued:
    return WorkflowQueued(workflow_id=WF, group="deploy-prod", limit=1, run=run, at=at(at_s))


def admitted(run: int = 0) -> WorkflowAdmitted:
    return WorkflowAdmitted(workflow_id=WF, group="deploy-prod", run=run, at=at(2))


# --- the workflow actor ---------------------------------------------------------------------


def test_a_run_of_a_group_is_queued_before_any_job() -> None:
    state = WFA.given(started()).when(Advance(workflow_id=WF, now=at(1))).then(queued())
    assert state.status is WorkflowStatus.QUEUED
    assert groups.queue_note(state) == "waiting for concurrency group deploy-prod (limit 1)"


def test_a_queued_run_queues_no_job_until_admitted() -> None:
    WFA.given(started(), queued()).when(Advance(workflow_id=WF, now=at(2))).then_nothing()


def test_an_admitted_run_queues_its_jobs() -> None:
    given = WFA.given(started(), queued())
    state = given.when(AdmitWorkflow(workflow_id=WF, run=0, now=at(2))).then(admitted())
    assert state.status is WorkflowStatus.RUNNING
    events = WFA.given(started(), queued(), admitted()).when(Advance(workflow_id=WF, now=at(3)))
    assert [type(e) for e in events.events()] == [JobQueued]


def test_a_grant_for_another_run_or_a_running_one_admits_nothing() -> None:
    WFA.given(started(), queued()).when(AdmitWorkflow(workflow_id=WF, run=1, now=at(2))).then()
    given = WFA.given(started(), queued(), admitted())
    given.when(AdmitWorkflow(workflow_id=WF, run=0, now=at(3))).then_nothing()


def test_a_cancel_while_queued_ends_the_run_at_once() -> None:
    cancel = WorkflowCancelRequested(workflow_id=WF, reason="no longer needed", requested_at=at(2))
    given = WFA.given(started(), queued(), cancel)
    given.when(Advance(workflow_id=WF, now=at(3))).then(
        WorkflowCancelled(workflow_id=WF, reason="no longer needed", ended_at=at(3))
    )


def test_a_queued_run_times_out_its_timeout_counts_from_the_start() -> None:
    given = WFA.given(started(grouped(timeout=60)), queued())
    events = given.when(TimeoutWorkflow(workflow_id=WF, now=at(60))).events()
    assert isinstance(events[0], WorkflowFailed) and events[0].timed_out


def test_a_queued_run_cannot_be_paused() -> None:
    given = WFA.given(started(), queued())
    given.when(PauseWorkflow(workflow_id=WF, by="ops", now=at(2))).then_raises(
        CommandRefused, match="waits for concurrency group deploy-prod"
    )


def test_a_run_paused_before_it_queued_queues_at_the_resume() -> None:
    from actors.engine.reactions import Control
    from events.requests import PauseRequest, ResumeRequest

    paused = react(History(started()).state, [Control(PauseRequest(workflow_id=WF))], at(1))
    assert kinds(paused.decided) == [("WorkflowPaused", "wf")]
    history = History(started(), *paused.decided)
    resumed = react(history.state, [Control(ResumeRequest(workflow_id=WF))], at(2))
    assert kinds(resumed.decided) == [("WorkflowResumed", "wf"), ("WorkflowQueued", "wf")]


def test_a_group_that_renders_to_no_name_fails_the_run() -> None:
    definition = grouped(Concurrency(group="deploy ${{ inputs.env }}"))
    given = WFA.given(started(definition))
    events = given.when(Advance(workflow_id=WF, now=at(1))).events()
    assert isinstance(events[0], WorkflowFailed)
    assert "cannot render the concurrency group: it renders to 'deploy prod'" in events[0].reason


def test_a_retried_run_is_queued_again_under_its_next_run_number() -> None:
    history = (
        started(),
        queued(),
        admitted(),
        JobSucceeded(workflow_id=WF, job="a", attempt=1, epoch=1, ended_at=at(3)),
        WorkflowFailed(workflow_id=WF, reason="x", ended_at=at(4)),
        WorkflowRetried(workflow_id=WF, by="ops", jobs=("a",), at=at(5)),
    )
    WFA.given(*history).when(Advance(workflow_id=WF, now=at(6))).then(queued(run=1, at_s=6))


def test_a_workflow_without_a_group_is_never_queued() -> None:
    plain = WorkflowStarted(workflow_id=WF, definition=dag(a={}), started_at=at(0))
    events = WFA.given(plain).when(Advance(workflow_id=WF, now=at(1))).events()
    assert [type(e) for e in events] == [JobQueued]


def test_a_cancel_of_a_queued_run_is_recorded_as_any_cancel() -> None:
    given = WFA.given(started(), queued())
    given.when(CancelWorkflow(workflow_id=WF, reason="superseded", now=at(2))).then(
        WorkflowCancelRequested(workflow_id=WF, reason="superseded", requested_at=at(2))
    )


# --- the group's queue ----------------------------------------------------------------------


def member(name: str, run: int = 0) -> Member:
    return Member(workflow_id=name, run=run, since=1.0)


def names(members: tuple[Member, ...]) -> list[str]:
    return [m.workflow_id for m in members]


def fill(limit: int, *entering: str, cancel: bool = False) -> GroupQueue:
    queue = GroupQueue()
    for name in entering:
        queue = group_queue.enter(queue, member(name), limit=limit, cancel_in_progress=cancel).queue
    return queue


def test_the_first_limit_entrants_get_a_slot_the_rest_wait_in_order() -> None:
    queue = fill(2, "w1", "w2", "w3", "w4")
    assert names(queue.holders) == ["w1", "w2"]
    assert names(queue.waiting) == ["w3", "w4"]


def test_a_member_entering_again_keeps_its_place() -> None:
    queue = fill(1, "w1", "w2", "w3")
    again = group_queue.enter(queue, member("w2"), limit=1, cancel_in_progress=False)
    assert again.queue == queue and again.granted == ()


def test_leaving_gives_the_slot_to_the_oldest_waiter() -> None:
    queue = fill(1, "w1", "w2", "w3")
    outcome = group_queue.leave(queue, "w1", 0, now=5.0)
    assert names(outcome.granted) == ["w2"]
    assert names(outcome.queue.holders) == ["w2"] and names(outcome.queue.waiting) == ["w3"]
    assert outcome.queue.holders[0].since == 5.0  # (its slot counts from the grant)


def test_a_waiter_that_leaves_loses_its_place_and_frees_nothing() -> None:
    queue = fill(1, "w1", "w2", "w3")
    outcome = group_queue.leave(queue, "w2", 0, now=5.0)
    assert outcome.granted == () and names(outcome.queue.waiting) == ["w3"]


def test_a_new_run_of_a_workflow_replaces_its_old_entry() -> None:
    queue = fill(1, "w1", "w2")
    outcome = group_queue.enter(queue, member("w1", run=1), limit=1, cancel_in_progress=False)
    assert names(outcome.queue.holders) == ["w2"] and outcome.granted[0].workflow_id == "w2"
    assert [(m.workflow_id, m.run) for m in outcome.queue.waiting] == [("w1", 1)]


def test_an_earlier_run_leaving_late_leaves_the_retried_run_in_place() -> None:
    queue = fill(1, "w1", "w2")
    again = group_queue.enter(queue, member("w1", run=1), limit=1, cancel_in_progress=False)
    late = group_queue.leave(again.queue, "w1", 0, now=5.0)
    assert [(m.workflow_id, m.run) for m in late.queue.members] == [("w2", 0), ("w1", 1)]


def test_stale_members_are_dropped_and_their_slots_granted() -> None:
    queue = fill(1, "w1", "w2")
    outcome = group_queue.without(queue, {("w1", 0)}, now=9.0)
    assert names(outcome.granted) == ["w2"]


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_the_holders_never_exceed_the_limit(limit: int) -> None:
    queue = GroupQueue()
    for step in range(20):
        name = f"w{step}"
        queue = group_queue.enter(queue, member(name), limit=limit, cancel_in_progress=False).queue
        assert len(queue.holders) <= limit
        if step % 3 == 2:
            queue = group_queue.leave(queue, queue.holders[0].workflow_id, 0, now=step).queue
            assert len(queue.holders) <= limit


def test_cancel_in_progress_supersedes_the_older_members() -> None:
    queue = fill(1, "w1", cancel=True)
    outcome = group_queue.enter(queue, member("w2"), limit=1, cancel_in_progress=True)
    assert names(outcome.superseded) == ["w1"]
    assert names(outcome.queue.holders) == ["w1"] and names(outcome.queue.waiting) == ["w2"]
    third = group_queue.enter(outcome.queue, member("w3"), limit=1, cancel_in_progress=True)
    assert names(third.superseded) == ["w1", "w2"]
    # The slot goes to the newest: a superseded waiter never gets one.
    freed = group_queue.leave(third.queue, "w1", 0, now=3.0)
    assert names(freed.granted) == ["w3"] and names(freed.queue.waiting) == ["w2"]


def test_cancel_in_progress_keeps_the_limit_newest() -> None:
    queue = fill(2, "w1", "w2", cancel=True)
    outcome = group_queue.enter(queue, member("w3"), limit=2, cancel_in_progress=True)
    assert names(outcome.superseded) == ["w1"]


# --- the owner's reaction -------------------------------------------------------------------


def test_a_start_is_queued_and_enters_its_group_with_a_timer_to_look_again() -> None:
    reaction = react(History(started()).state, [], at(1))
    assert kinds(reaction.decided) == [("WorkflowQueued", "wf")]
    assert reaction.group_calls == [groups.Enter(WF, 0, "deploy-prod", 1, False)]
    assert [t.timer_id() for t in reaction.timers] == [f"{WF}.group-r0-c1"]


def test_a_grant_admits_the_run_and_queues_its_jobs_in_one_decision() -> None:
    state = History(started(), queued()).state
    admit = Admit(AdmitRequest(workflow_id=WF, run=0, group="deploy-prod"))
    reaction = react(state, [admit], at(2))
    assert kinds(reaction.decided) == [("WorkflowAdmitted", "wf"), ("JobQueued", "a")]
    assert reaction.group_calls == []


def test_a_grant_to_a_run_that_ended_gives_the_slot_back() -> None:
    cancelled = WorkflowCancelled(workflow_id=WF, reason="x", ended_at=at(2))
    state = History(started(), queued(), cancelled).state
    admit = Admit(AdmitRequest(workflow_id=WF, run=0, group="deploy-prod"))
    reaction = react(state, [admit], at(3))
    assert reaction.decided == [] or all(isinstance(e, JobCancelled) for e in reaction.decided)
    assert reaction.group_calls == [groups.Leave(WF, 0, "deploy-prod")]


def test_the_end_of_a_run_gives_its_slot_back() -> None:
    history = History(started(), queued(), admitted())
    history.add(*react(history.state, [], at(3)).decided)  # job a queued
    reaction = react(
        history.state,
        history.add(JobSucceeded(workflow_id=WF, job="a", attempt=1, epoch=1, ended_at=at(4))),
        at(4),
    )
    assert isinstance(reaction.decided[-1], WorkflowSucceeded)
    assert reaction.group_calls == [groups.Leave(WF, 0, "deploy-prod")]


def test_the_group_timer_looks_again_while_queued_and_stops_once_admitted() -> None:
    timer = GroupTimer(workflow_id=WF, run=0, check=1, due=at(11))
    reaction = react(History(started(), queued()).state, [Fired(timer)], at(11))
    assert reaction.group_calls == [groups.Enter(WF, 0, "deploy-prod", 1, False)]
    assert [t.timer_id() for t in reaction.timers] == [f"{WF}.group-r0-c2"]
    running = react(History(started(), queued(), admitted()).state, [Fired(timer)], at(11))
    assert running.group_calls == [] and running.timers == []


# --- what status and list show ----------------------------------------------------------------


def test_status_and_list_say_a_queued_run_waits_and_for_which_group() -> None:
    from rich.console import Console

    from projections.views import summary, workflow_view
    from sdk.cli._render import summary_table

    view = workflow_view(History(started(), queued()).state)
    assert view.status == "queued" and view.group == "deploy-prod"
    assert view.reason == "waiting for concurrency group deploy-prod (limit 1)"
    console = Console(width=200, record=True)
    console.print(summary_table([summary(view)]))
    text = console.export_text()
    assert "queued" in text and "(waiting for concurrency group deploy-prod)" in text
    admitted_view = workflow_view(History(started(), queued(), admitted()).state)
    assert admitted_view.status == "running" and admitted_view.reason is None


def test_a_job_cancelled_by_its_group_s_newcomer_ends_the_workflow_cancelled_saying_why() -> None:
    plain = WorkflowStarted(workflow_id=WF, definition=dag(a={}), started_at=at(0))
    history = History(plain)
    history.add(*react(history.state, [], at(1)).decided)  # job a queued
    why = "superseded by wf-2/a in concurrency group g (cancel_in_progress)"
    cancelled = JobCancelled(workflow_id=WF, job="a", reason=why, at=at(3))
    reaction = react(history.state, history.add(cancelled), at(3))
    assert reaction.decided == [
        WorkflowCancelled(workflow_id=WF, reason=f"job a was cancelled: {why}", ended_at=at(3))
    ]


# --- the builder and what a start request carries -------------------------------------------


def test_the_builder_s_group_survives_the_start_request_s_mapping() -> None:
    from actors.definitions import parse_workflow
    from actors.definitions.mapping import definition_mapping
    from sdk.builder import Workflow

    group = Concurrency(group="deploy-${{ inputs.env }}", limit=2, cancel_in_progress=True)
    wf = Workflow("deploy", inputs={"env": "prod"}, concurrency=group)
    wf.job("a", run="true", concurrency=Concurrency(group="db", cancel_in_progress=True))
    wf.job("b", run="true", rate_limit=RateLimit(limit=5, per=60))  # (was lost too)
    built = wf.build()
    assert built.concurrency == group
    again = parse_workflow(definition_mapping(built))
    assert again == built
    assert again.jobs["a"].concurrency == Concurrency(group="db", cancel_in_progress=True)
    short = Workflow("deploy", concurrency="deploy")
    short.job("a", run="true")
    assert short.build().concurrency == Concurrency(group="deploy", limit=1)
