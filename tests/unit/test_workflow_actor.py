"""The workflow actor: start, DAG semantics, conditions, templating, cancellation, timeouts."""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import workflow
from actors.appends import plan_appends
from actors.commands import (
    Advance,
    CancelWorkflow,
    StartWorkflow,
    TimeoutWorkflow,
)
from actors.workflow import WorkflowState
from events import subjects
from events.base import Event
from events.catalog import (
    JobCancelled,
    JobCancelRequested,
    JobQueued,
    JobSkipped,
    JobSpec,
    JobStatus,
    WorkflowCancelled,
    WorkflowCancelRequested,
    WorkflowEvent,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowStatus,
    WorkflowSucceeded,
)
from events.definition import (
    Backoff,
    InputSpec,
    JobDefinition,
    OnFailure,
    RetryPolicy,
    WorkflowDefinition,
)
from events.errors import InvalidWorkflow, WorkflowNotFound
from events.memory_store import matches
from tests.unit.given_when_then import T0, at, workflow_actor
from tests.unit.simulation import Simulation

WF = "wf-1"
WFA = workflow_actor(WF)


def dag(
    *,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    inputs: dict[str, InputSpec] | None = None,
    **jobs: dict[str, Any],
) -> WorkflowDefinition:
    return make_dag(jobs, timeout=timeout, env=env, inputs=inputs)


def make_dag(
    jobs: dict[str, dict[str, Any]],
    *,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    inputs: dict[str, InputSpec] | None = None,
) -> WorkflowDefinition:
    """A definition whose jobs run ``./<name>`` unless told otherwise."""
    return WorkflowDefinition(
        name="test",
        timeout=timeout,
        env=env or {},
        inputs=inputs or {},
        jobs={
            name: JobDefinition(name=name, **{"run": f"./{name}", **kw})
            for name, kw in jobs.items()
        },
    )


def started(definition: WorkflowDefinition, **inputs: Any) -> WorkflowStarted:
    return WorkflowStarted(workflow_id=WF, definition=definition, inputs=inputs, started_at=T0)


def kinds(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.event_type, getattr(e, "job", "wf")) for e in events]


CHAIN = dag(a={}, b={"needs": ("a",)}, c={"needs": ("b",)}, d={"needs": ("c",)})


# --- start ----------------------------------------------------------------------------------


def test_starting_records_the_definition_and_resolved_inputs() -> None:
    definition = dag(a={}, inputs={"v": InputSpec(default="0.1"), "n": InputSpec()})
    command = StartWorkflow(
        workflow_id=WF, definition=definition, inputs={"n": 3}, now=T0, idempotency_key="k1"
    )
    state = (
        WFA.given()
        .when(command)
        .then(
            WorkflowStarted(
                workflow_id=WF,
                definition=definition,
                inputs={"v": "0.1", "n": 3},
                idempotency_key="k1",
                started_at=T0,
            )
        )
    )
    assert state.status is WorkflowStatus.RUNNING
    assert state.job("a").status is JobStatus.PENDING


def test_starting_twice_is_idempotent() -> None:
    command = StartWorkflow(workflow_id=WF, definition=CHAIN, idempotency_key="k", now=at(5))
    WFA.given(started(CHAIN)).when(command).then_nothing()


def test_a_start_with_bad_inputs_lists_every_problem() -> None:
    definition = dag(a={}, inputs={"v": InputSpec(required=True)})
    command = StartWorkflow(workflow_id=WF, definition=definition, inputs={"x": 1}, now=T0)
    error = WFA.given().when(command).then_raises(InvalidWorkflow)
    assert error.problems == [
        "inputs.x: unknown input (this workflow takes: v)",
        "inputs.v: required input is missing",
    ]


@pytest.mark.parametrize(
    ("jobs", "problem"),
    [
        ({"a": {"needs": ("b",)}, "b": {"needs": ("a",)}}, "cycle a -> b -> a"),
        ({"a": {"needs": ("ghost",)}}, "jobs.a.needs: unknown job 'ghost'"),
        ({"a.b": {}}, "jobs.a.b: job name 'a.b' is not a valid name"),
    ],
)
def test_a_start_with_a_broken_graph_is_refused(jobs: dict[str, Any], problem: str) -> None:
    command = StartWorkflow(workflow_id=WF, definition=dag(**jobs), now=T0)
    error = WFA.given().when(command).then_raises(InvalidWorkflow)
    assert problem in str(error)


# --- queueing, templating, delays -----------------------------------------------------------


def test_advance_queues_the_roots_with_rendered_specs() -> None:
    definition = dag(
        env={"REGION": "eu", "MODE": "wf"},
        inputs={"version": InputSpec(default="1.0")},
        build={
            "run": "make v${{ inputs.version }}",
            "env": {"MODE": "job-${{ env.REGION }}"},
            "labels": ("linux",),
            "timeout": 60,
            "with": {"n": "${{ inputs.version }}", "k": 2},
            "retry": RetryPolicy(max_attempts=2),
        },
        test={"needs": ("build",)},
    )
    WFA.given(started(definition, version="2.0")).when(Advance(workflow_id=WF, now=at(1))).then(
        JobQueued(
            workflow_id=WF,
            job="build",
            attempt=1,
            queued_at=at(1),
            retry=RetryPolicy(max_attempts=2),
            spec=JobSpec(
                run="make v2.0",
                env={"REGION": "eu", "MODE": "job-eu"},
                labels=("linux",),
                timeout=60,
                with_={"n": "2.0", "k": 2},
            ),
        )
    )


def test_a_chain_runs_in_order_and_outputs_flow_downstream() -> None:
    definition = dag(
        a={},
        b={"needs": ("a",), "run": "deploy ${{ needs.a.outputs.artifact }}"},
        c={"needs": ("b",)},
    )
    sim = Simulation()
    sim.start(definition)
    assert kinds(sim.advance()) == [("JobQueued", "a")]
    sim.claim("a")
    sim.finish("a", {"artifact": "app.tgz"})
    (queued,) = sim.advance()
    assert isinstance(queued, JobQueued)
    assert queued.spec.run == "deploy app.tgz"
    assert queued.spec.upstream_outputs == {"a": {"artifact": "app.tgz"}}
    sim.run()
    assert sim.state.status is WorkflowStatus.SUCCEEDED
    assert [r.event.event_type for r in sim.log][-1] == "WorkflowSucceeded"


def test_fan_out_then_fan_in() -> None:
    definition = dag(
        a={},
        b1={"needs": ("a",)},
        b2={"needs": ("a",)},
        b3={"needs": ("a",)},
        d={"needs": ("b1", "b2", "b3")},
    )
    sim = Simulation()
    sim.start(definition)
    sim.advance()
    sim.claim("a")
    sim.finish("a", "ok")
    assert kinds(sim.advance()) == [("JobQueued", "b1"), ("JobQueued", "b2"), ("JobQueued", "b3")]
    for name in ("b1", "b2"):
        sim.claim(name)
        sim.finish(name, "ok")
        assert sim.advance() == []  # d waits for all of its needs
    sim.claim("b3")
    sim.finish("b3", "ok")
    assert kinds(sim.advance()) == [("JobQueued", "d")]
    sim.run()
    assert sim.state.status is WorkflowStatus.SUCCEEDED


def test_delay_and_at_set_when_a_job_may_be_claimed() -> None:
    later = T0 + timedelta(hours=1)
    definition = dag(a={"delay": 5}, b={"at": later}, c={"at": T0, "delay": 30}, d={})
    events = WFA.given(started(definition)).when(Advance(workflow_id=WF, now=at(2))).events()
    assert {e.job: e.not_before for e in events if isinstance(e, JobQueued)} == {
        "a": at(7),
        "b": later,
        "c": at(32),
        "d": None,
    }


# --- failures, skips and conditions ---------------------------------------------------------


def test_a_failure_skips_the_whole_chain_below_it_at_once() -> None:
    sim = Simulation()
    sim.start(CHAIN)
    sim.advance()
    sim.claim("a")
    sim.finish("a", "fatal")
    events = sim.advance()
    assert kinds(events) == [
        ("JobSkipped", "b"),
        ("JobSkipped", "c"),
        ("JobSkipped", "d"),
        ("WorkflowFailed", "wf"),
    ]
    assert [e.reason for e in events if isinstance(e, JobSkipped)] == [
        "needs a, which failed",
        "needs b, which skipped",
        "needs c, which skipped",
    ]
    assert events[-1] == WorkflowFailed(
        workflow_id=WF, reason="1 job(s) failed: a", failed_jobs=("a",), ended_at=sim.now
    )


def test_retries_exhausting_fail_the_workflow() -> None:
    policy = RetryPolicy(max_attempts=3, backoff=Backoff.EXPONENTIAL, delay=1, max_delay=1.5)
    sim = Simulation()
    sim.start(dag(a={"retry": policy}, b={"needs": ("a",)}))
    sim.run({"a": ["fail", "fail", "fail"]})
    assert sim.statuses() == {"a": "failed", "b": "skipped"}
    assert sim.state.status is WorkflowStatus.FAILED
    assert sim.job_events("a").count("JobRetryScheduled") == 2
    assert sim.state.job("a").attempt == 3


def test_a_retry_that_succeeds_lets_the_workflow_succeed() -> None:
    sim = Simulation()
    sim.start(dag(a={"retry": RetryPolicy(max_attempts=3)}, b={"needs": ("a",)}))
    sim.run({"a": ["fail", "ok"]})
    assert sim.statuses() == {"a": "succeeded", "b": "succeeded"}


def test_a_permanent_failure_is_not_retried_and_fails_the_workflow() -> None:
    sim = Simulation()
    sim.start(dag(a={"retry": RetryPolicy(max_attempts=5)}))
    sim.run({"a": ["fatal", "ok"]})
    assert sim.job_events("a") == ["JobQueued", "JobStarted", "JobFailed"]
    assert sim.state.status is WorkflowStatus.FAILED


def test_on_failure_continue_does_not_fail_the_workflow_but_skips_its_needs() -> None:
    sim = Simulation()
    sim.start(dag(lint={"on_failure": OnFailure.CONTINUE}, after={"needs": ("lint",)}, other={}))
    sim.run({"lint": ["fail"]})
    assert sim.statuses() == {"after": "skipped", "lint": "failed", "other": "succeeded"}
    assert sim.state.status is WorkflowStatus.SUCCEEDED


def test_retry_forever_retries_until_it_succeeds() -> None:
    policy = RetryPolicy(max_attempts=1, backoff=Backoff.FIXED, delay=10)
    sim = Simulation()
    sim.start(dag(a={"retry": policy, "on_failure": OnFailure.RETRY_FOREVER}))
    sim.run({"a": ["fail"] * 7 + ["ok"]})
    assert sim.state.status is WorkflowStatus.SUCCEEDED
    assert sim.state.job("a").attempt == 8


def test_needs_any_runs_when_one_branch_failed() -> None:
    # The example: lint may fail (continue), notify needs any of test and lint.
    definition = dag(
        build={},
        test={"needs": ("build",)},
        lint={"needs": ("build",), "on_failure": OnFailure.CONTINUE},
        notify={"needs_any": ("test", "lint"), "if": "${{ always() }}", "delay": 5},
    )
    sim = Simulation()
    sim.start(definition)
    sim.run({"lint": ["fail"]})
    assert sim.statuses()["notify"] == "succeeded"
    assert sim.state.status is WorkflowStatus.SUCCEEDED


def test_needs_any_is_not_blocked_by_a_skipped_branch() -> None:
    definition = dag(
        inputs={"fast": InputSpec(default="no")},
        x={"if": "inputs.fast == 'yes'"},
        y={},
        z={"needs_any": ("x", "y")},
    )
    sim = Simulation()
    sim.start(definition)
    sim.run()
    assert sim.statuses() == {"x": "skipped", "y": "succeeded", "z": "succeeded"}


def test_needs_any_waits_for_every_member_before_deciding() -> None:
    sim = Simulation()
    sim.start(dag(x={}, y={}, z={"needs_any": ("x", "y")}))
    sim.advance()
    sim.claim("x")
    sim.finish("x", "ok")
    assert sim.advance() == []  # y still queued: z's condition must see every result
    sim.claim("y")
    sim.finish("y", "fatal")
    assert kinds(sim.advance()) == [("JobQueued", "z")]


def test_needs_any_with_no_success_is_skipped() -> None:
    sim = Simulation()
    sim.start(
        dag(x={"on_failure": OnFailure.CONTINUE}, y={"if": "false"}, z={"needs_any": ("x", "y")})
    )
    sim.run({"x": ["fail"]})
    assert sim.statuses()["z"] == "skipped"
    assert sim.state.job("z").status is JobStatus.SKIPPED
    skipped = [r.event for r in sim.log if isinstance(r.event, JobSkipped)]
    assert [(e.job, e.reason) for e in skipped] == [
        ("y", "condition is false: false"),
        ("z", "none of x, y succeeded"),
    ]


def test_conditions_over_outputs_choose_a_branch() -> None:
    definition = dag(
        build={},
        deploy_x={"needs": ("build",), "if": "needs.build.outputs.kind == 'x'"},
        deploy_y={"needs": ("build",), "if": "${{ needs.build.outputs.kind == 'y' }}"},
        report={"needs": ("build",), "if": "needs.build.result == 'success'"},
    )
    sim = Simulation()
    sim.start(definition)
    sim.run({"build": [{"kind": "x"}]})
    assert sim.statuses() == {
        "build": "succeeded",
        "deploy_x": "succeeded",
        "deploy_y": "skipped",
        "report": "succeeded",
    }
    assert sim.state.status is WorkflowStatus.SUCCEEDED


def test_conditions_over_inputs() -> None:
    definition = dag(
        inputs={"env": InputSpec(default="dev")},
        prod={"if": "inputs.env == 'prod'"},
        dev={"if": "inputs.env != 'prod'"},
    )
    sim = Simulation()
    sim.start(definition)
    sim.run()
    assert sim.statuses() == {"dev": "succeeded", "prod": "skipped"}


def test_always_runs_after_a_failure_and_the_workflow_still_fails() -> None:
    sim = Simulation()
    sim.start(dag(a={}, cleanup={"needs": ("a",), "if": "always()"}))
    sim.run({"a": ["fatal"]})
    assert sim.statuses() == {"a": "failed", "cleanup": "succeeded"}
    assert sim.state.status is WorkflowStatus.FAILED
    assert sim.state.end_reason == "1 job(s) failed: a"


def test_failure_sees_a_failed_ancestor_through_a_skipped_chain() -> None:
    definition = dag(
        a={},
        b={"needs": ("a",)},
        on_error={"needs": ("b",), "if": "failure()"},
        on_ok={"needs": ("b",), "if": "success()"},
    )
    sim = Simulation()
    sim.start(definition)
    sim.run({"a": ["fatal"]})
    assert sim.statuses() == {
        "a": "failed",
        "b": "skipped",
        "on_error": "succeeded",
        "on_ok": "skipped",
    }


def test_a_condition_that_cannot_be_evaluated_fails_the_job_without_running_it() -> None:
    sim = Simulation()
    sim.start(dag(a={"if": "fromJSON('{oops') == 1"}, b={"run": "x ${{ fromJSON('[') }}"}))
    sim.run()
    assert sim.statuses() == {"a": "failed", "b": "failed"}
    assert sim.job_events("a") == ["JobFailed"]
    errors = {name: sim.state.job(name).error or "" for name in ("a", "b")}
    assert errors["a"].startswith("cannot evaluate condition")
    assert errors["b"].startswith("cannot render the job")
    assert sim.state.status is WorkflowStatus.FAILED


# --- cancellation ---------------------------------------------------------------------------


def cancel_scenario() -> Simulation:
    """a runs, b is queued, c waits on a, d (always) waits on a, done succeeded."""
    definition = dag(
        done={},
        a={},
        b={"needs": ("done",), "delay": 60},
        c={"needs": ("a",)},
        d={"needs": ("a",), "if": "always()"},
    )
    sim = Simulation()
    sim.start(definition)
    sim.advance()
    sim.claim("done")
    sim.finish("done", "ok")
    sim.advance()
    sim.claim("a")
    return sim


def test_cancellation_withdraws_queued_jobs_and_asks_running_ones_to_stop() -> None:
    sim = cancel_scenario()
    assert sim.statuses() == {
        "a": "running",
        "done": "succeeded",
        "b": "queued",
        "c": "pending",
        "d": "pending",
    }
    reason = "cancelled by user"
    assert sim.cancel() == [
        WorkflowCancelRequested(workflow_id=WF, reason=reason, requested_at=sim.now)
    ]
    assert sim.advance() == [
        JobCancelRequested(workflow_id=WF, job="a", reason=reason, requested_at=sim.now),
        JobCancelled(workflow_id=WF, job="b", reason=reason, at=sim.now),
        JobCancelled(workflow_id=WF, job="c", reason=reason, at=sim.now),
    ]
    assert sim.state.status is WorkflowStatus.RUNNING  # a still runs, d waits for it
    sim.stop("a")
    assert kinds(sim.advance()) == [("JobQueued", "d")]  # the always() job still runs
    sim.claim("d")
    sim.finish("d", "ok")
    assert sim.advance() == [WorkflowCancelled(workflow_id=WF, reason=reason, ended_at=sim.now)]
    assert sim.statuses()["a"] == "cancelled"


def test_a_running_job_that_runs_regardless_survives_a_cancel_but_not_a_forced_one() -> None:
    sim = Simulation()
    sim.start(dag(a={}, watch={"if": "always()"}))
    sim.advance()
    sim.claim("a")
    sim.claim("watch")
    sim.cancel()
    assert kinds(sim.advance()) == [("JobCancelRequested", "a")]
    sim.stop("a")
    assert sim.advance() == []  # watch still runs: the workflow waits for it
    reason = "cancelled by user"
    assert sim.cancel("stop now", force=True) == [
        WorkflowCancelRequested(workflow_id=WF, reason="stop now", force=True, requested_at=sim.now)
    ]
    assert sim.advance() == [
        JobCancelRequested(workflow_id=WF, job="watch", reason=reason, requested_at=sim.now)
    ]
    sim.stop("watch")
    assert sim.advance() == [WorkflowCancelled(workflow_id=WF, reason=reason, ended_at=sim.now)]


def test_a_forced_cancel_stops_pending_cleanup_jobs_too() -> None:
    sim = Simulation()
    sim.start(dag(a={}, cleanup={"needs": ("a",), "if": "always()"}))
    sim.advance()
    sim.claim("a")
    sim.cancel(force=True)
    assert kinds(sim.advance()) == [("JobCancelRequested", "a"), ("JobCancelled", "cleanup")]
    sim.stop("a")
    assert kinds(sim.advance()) == [("WorkflowCancelled", "wf")]


def test_cancelling_twice_or_after_the_end_does_nothing() -> None:
    given = WFA.given(started(CHAIN), WorkflowCancelRequested(workflow_id=WF, requested_at=T0))
    given.when(CancelWorkflow(workflow_id=WF, now=at(1))).then_nothing()
    ended = WFA.given(started(CHAIN), WorkflowSucceeded(workflow_id=WF, ended_at=at(1)))
    ended.when(CancelWorkflow(workflow_id=WF, now=at(2))).then_nothing()


def test_cancelling_an_unknown_workflow_is_an_error() -> None:
    WFA.given().when(CancelWorkflow(workflow_id=WF, now=T0)).then_raises(WorkflowNotFound)


def test_advance_on_a_workflow_that_never_started_does_nothing() -> None:
    WFA.given().when(Advance(workflow_id=WF, now=T0)).then_nothing()


# --- timeouts -------------------------------------------------------------------------------


def test_a_workflow_timeout_ends_it_first_then_stops_every_job() -> None:
    definition = dag(
        a={},
        done={},
        b={"needs": ("done",)},
        c={"needs": ("a",)},
        d={"needs": ("a",), "if": "always()"},
        timeout=1800,
    )
    sim = Simulation()
    sim.start(definition)
    assert sim.state.timeout_deadline() == at(1800)
    sim.advance()
    sim.claim("a")
    sim.clock = 1800
    why = "the workflow timed out after 30m"
    assert sim.timeout() == [
        WorkflowFailed(
            workflow_id=WF, reason="timed out after 30m", timed_out=True, ended_at=sim.now
        ),
        JobCancelRequested(workflow_id=WF, job="a", reason=why, requested_at=sim.now),
        JobCancelled(workflow_id=WF, job="done", reason=why, at=sim.now),
        JobCancelled(workflow_id=WF, job="b", reason=why, at=sim.now),
        JobCancelled(workflow_id=WF, job="c", reason=why, at=sim.now),
        JobCancelled(workflow_id=WF, job="d", reason=why, at=sim.now),
    ]
    assert sim.state.status is WorkflowStatus.FAILED
    sim.claim("a", delivery=2)  # a's lease lapses: the redelivery finds the cancel request
    assert sim.statuses()["a"] == "cancelled"
    assert sim.advance() == []
    assert sim.timeout() == []


def test_advance_after_the_end_stops_jobs_a_partial_append_left_behind() -> None:
    definition = dag(a={}, b={}, timeout=10)
    given = WFA.given(
        started(definition),
        WorkflowFailed(
            workflow_id=WF, reason="timed out after 10s", timed_out=True, ended_at=at(10)
        ),
    )
    given.when(Advance(workflow_id=WF, now=at(11))).then(
        JobCancelled(workflow_id=WF, job="a", reason="the workflow timed out after 10s", at=at(11)),
        JobCancelled(workflow_id=WF, job="b", reason="the workflow timed out after 10s", at=at(11)),
    )


def test_a_timeout_without_a_configured_timeout_does_nothing() -> None:
    WFA.given(started(CHAIN)).when(TimeoutWorkflow(workflow_id=WF, now=at(9))).then_nothing()


# --- replay and appends ---------------------------------------------------------------------


def test_replay_equals_folding_with_evolve_and_tracks_sequences() -> None:
    sim = Simulation()
    sim.start(dag(a={}, b={"needs": ("a",)}, c={}))
    sim.run({"a": ["ok"], "c": ["fatal"]})
    folded = WorkflowState(workflow_id=WF)
    for recorded in sim.log:
        folded = workflow.evolve(folded, recorded.event)
    replayed = workflow.replay(sim.log)
    assert replayed.status is folded.status is WorkflowStatus.FAILED
    assert {n: j.status for n, j in replayed.jobs.items()} == {
        n: j.status for n, j in folded.jobs.items()
    }
    assert replayed.stream_seq == len(sim.log)
    assert replayed.last_seq == len(sim.log)  # the workflow's end is the last event
    assert replayed.job("b").last_seq == max(
        r.seq for r in sim.log if matches(subjects.job_actor_filter(WF, "b"), r.subject)
    )
    assert workflow.replay(sim.log[5:], workflow.replay(sim.log[:5])) == replayed


def test_plan_appends_groups_events_per_actor_in_order() -> None:
    state = workflow.replay([started(CHAIN)])
    events: list[Event] = [
        JobSkipped(workflow_id=WF, job="b", reason="r", at=T0),
        JobSkipped(workflow_id=WF, job="c", reason="r", at=T0),
        WorkflowSucceeded(workflow_id=WF, ended_at=T0),
    ]
    plan = plan_appends(state, events)
    assert [(a.actor_filter, a.expected_last_seq, len(a.events)) for a in plan] == [
        (subjects.job_actor_filter(WF, "b"), 0, 1),
        (subjects.job_actor_filter(WF, "c"), 0, 1),
        (subjects.workflow_actor_filter(WF), 0, 1),
    ]


# --- invariants over random workflows -------------------------------------------------------

_CONDITIONS = [
    None,
    None,
    "always()",
    "failure()",
    "success()",
    "cancelled()",
    "!cancelled()",
    "inputs.flag == 'yes'",
    "needs.j0.outputs.k == 'v'",
]


@st.composite
def random_runs(draw: st.DrawFn) -> tuple[WorkflowDefinition, dict[str, list[str]], int | None]:
    names = [f"j{i}" for i in range(draw(st.integers(1, 6)))]
    jobs: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        upstream = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3)) if i else []
        split = draw(st.integers(0, len(upstream)))
        condition = draw(st.sampled_from(_CONDITIONS))
        jobs[name] = {
            "needs": tuple(upstream[:split]),
            "needs_any": tuple(upstream[split:]),
            "if": condition if condition is None or "j0" not in condition or i else None,
            "on_failure": draw(st.sampled_from(list(OnFailure))),
            "retry": RetryPolicy(max_attempts=draw(st.integers(1, 3))),
        }
    outcomes = {
        name: draw(st.lists(st.sampled_from(["ok", "fail", "fatal", "hang"]), max_size=4))
        for name in names
    }
    cancel_at = draw(st.none() | st.integers(0, 8))
    if cancel_at is None:  # a job that hangs forever would need a cancel to end
        outcomes = {name: [o for o in script if o != "hang"] for name, script in outcomes.items()}
    definition = make_dag(jobs, inputs={"flag": InputSpec(default="yes")})
    return definition, outcomes, cancel_at


@settings(max_examples=int(os.environ.get("JW_EXAMPLES", "300")), deadline=None)
@given(random_runs())
def test_every_workflow_settles_consistently(
    run: tuple[WorkflowDefinition, dict[str, list[str]], int | None],
) -> None:
    definition, outcomes, cancel_at = run
    sim = Simulation()
    sim.start(definition)
    sim.run(outcomes, cancel_at_step=cancel_at)  # checks Advance idempotency at every step
    if sim.state.status is WorkflowStatus.RUNNING:
        # Only a hanging job that runs regardless of cancellation (always()) can hold it up.
        assert sim.state.cancel_requested
        sim.cancel(force=True)
        sim.run()

    state = sim.state
    assert state.status is not None and state.status.is_terminal
    assert all(state.job(name).status.is_terminal for name in definition.jobs)
    events = [r.event for r in sim.log]
    end = next(
        i
        for i, e in enumerate(events)
        if isinstance(e, WorkflowEvent)
        and e.event_type != "WorkflowStarted"
        and e.event_type != "WorkflowCancelRequested"
    )
    assert end == len(events) - 1  # nothing happens after the end (no timeout here)
    for name in definition.jobs:
        queued = [(e.attempt) for e in events if isinstance(e, JobQueued) and e.job == name]
        assert queued == list(range(1, len(queued) + 1))
    if state.cancel_requested:
        assert state.status is WorkflowStatus.CANCELLED
    else:
        must_fail = any(
            state.job(name).status is JobStatus.FAILED
            and definition.jobs[name].on_failure is not OnFailure.CONTINUE
            for name in definition.jobs
        )
        assert (state.status is WorkflowStatus.FAILED) is must_fail
    folded = WorkflowState(workflow_id=WF)
    for event in events:
        folded = workflow.evolve(folded, event)
    assert workflow.replay(sim.log) == dataclasses.replace(
        folded, last_seq=state.last_seq, stream_seq=state.stream_seq, jobs=state.jobs
    )
    assert {n: j.status for n, j in folded.jobs.items()} == {
        n: j.status for n, j in state.jobs.items()
    }
