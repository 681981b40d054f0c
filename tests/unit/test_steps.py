"""Workflow outputs, ``set`` and ``sleep``/``until`` steps, ``needs_at_least`` joins: their
validation (located problems), the workflow actor's decisions and the engine's reactions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from actors import job
from actors.commands import Advance, ClaimJob, RerunWorkflow
from actors.definitions import load_workflow_text, parse_workflow
from actors.definitions.mapping import definition_mapping
from actors.engine.reactions import Cancel, Fired
from actors.engine.timers import TIMERS, SleepTimer
from actors.job import ClaimRefused
from events.catalog import (
    JobCancelled,
    JobFailed,
    JobQueued,
    JobSkipped,
    JobSleepStarted,
    JobStatus,
    JobSucceeded,
    WorkflowFailed,
    WorkflowSucceeded,
)
from events.definition import AtLeast, InputSpec, OnFailure
from events.errors import InvalidWorkflow
from events.requests import CancelRequest
from projections.views import workflow_view
from sdk.builder import Workflow
from tests.unit.given_when_then import T0, at
from tests.unit.simulation import Simulation
from tests.unit.test_reactions import History, when
from tests.unit.test_workflow_actor import WF, WFA, dag, kinds, started


def problems_of(raw: Any) -> list[str]:
    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow(raw)
    return caught.value.problems


def wf(jobs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "wf", "jobs": jobs, **extra}


# --- validation -----------------------------------------------------------------------------


STEPS_YAML = """
name: steps
inputs:
  version: {default: "1.0"}
outputs:
  tag: ${{ needs.meta.outputs.tag }}
  fastest: ${{ needs.race.result }}
jobs:
  meta:
    set:
      tag: v${{ inputs.version }}
      retries: 3
  pause: {sleep: 10m, needs: [meta]}
  later: {until: "2030-01-01T00:00:00Z"}
  a: {run: "true"}
  b: {run: "true"}
  c: {run: "true"}
  race:
    run: echo ${{ needs.a.result }}
    needs_at_least: {count: 2, of: [a, b, c]}
"""


def test_the_new_keys_parse_and_round_trip() -> None:
    definition = load_workflow_text(STEPS_YAML)
    assert definition.outputs == {
        "tag": "${{ needs.meta.outputs.tag }}",
        "fastest": "${{ needs.race.result }}",
    }
    assert definition.jobs["meta"].set_ == {"tag": "v${{ inputs.version }}", "retries": "3"}
    assert definition.jobs["pause"].sleep == 600
    assert definition.jobs["later"].until == datetime(2030, 1, 1, tzinfo=UTC)
    assert definition.jobs["race"].needs_at_least == AtLeast(count=2, of=("a", "b", "c"))
    assert definition.jobs["race"].upstream == ("a", "b", "c")
    assert parse_workflow(definition_mapping(definition)) == definition


def test_the_builder_writes_the_same_definition() -> None:
    built = Workflow("steps", inputs={"version": "1.0"})
    meta = built.job("meta", set_={"tag": "v${{ inputs.version }}", "retries": "3"})
    built.job("pause", sleep="10m", needs=meta)
    built.job("later", until=datetime(2030, 1, 1, tzinfo=UTC))
    a, b, c = (built.job(name, run="true") for name in "abc")
    race = built.job("race", run="echo ${{ needs.a.result }}", needs_at_least=(2, [a, b, c]))
    built.output("tag", meta.output("tag"))
    built.output("fastest", f"${{{{ {race.result} }}}}")
    assert built.build() == load_workflow_text(STEPS_YAML)
    constructed = Workflow("w", outputs={"v": "1"})
    constructed.job("a", run="true")
    assert constructed.build().outputs == {"v": "1"}


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (wf({"a": {"set": "x"}}), "jobs.a.set: expected a mapping of output names to expressions"),
        (wf({"a": {"set": {}}}), "jobs.a.set: empty: name at least one output"),
        (wf({"a": {"set": {"x": [1]}}}), "jobs.a.set.x: expected text or a ${{ }} expression"),
        (wf({"a": {"set": {"a.b": "1"}}}), "jobs.a.set['a.b']: output name 'a.b' is not a valid"),
        (wf({"a": {"set": {"x": "${{ nope }}"}}}), "jobs.a.set.x: unknown name 'nope'"),
        (wf({"a": {"set": {"x": "${{ inputs.v }}"}}}), "jobs.a.set.x: inputs.v: no such input"),
        (wf({"a": {"set": {"x": "1"}, "retry": 3}}), "jobs.a.retry: a set job runs on no worker"),
        (wf({"a": {"sleep": "1m", "labels": ["x"]}}), "jobs.a.labels: a sleep job runs on no"),
        (wf({"a": {"run": "x", "sleep": "1m"}}), "jobs.a: set only one of run, sleep"),
        (wf({"a": {"sleep": "1m", "for_each": "[1]"}}), "jobs.a.for_each: a sleep job runs on no"),
        (wf({"a": {"sleep": "1m", "until": "2030-01-01T00:00:00Z"}}), "jobs.a: set only one of"),
        (wf({"a": {"sleep": "soon"}}), "jobs.a.sleep: invalid duration 'soon'"),
        (wf({"a": {"until": "2030-01-01T00:00:00"}}), "jobs.a.until: '2030-01-01T00:00:00' has no"),
        (wf({"a": {"until": 5}}), "jobs.a.until: expected an ISO 8601 time"),
        (wf({"a": {}}), "jobs.a: a job needs one of run (a shell command), uses (a handler name)"),
        (
            wf({"a": {"run": "x"}, "j": {"run": "x", "needs_at_least": [1]}}),
            "jobs.j.needs_at_least: expected a mapping with count and of, got a list",
        ),
        (
            wf({"a": {"run": "x"}, "j": {"run": "x", "needs_at_least": {"count": 2, "of": ["a"]}}}),
            "jobs.j.needs_at_least.count: 2 of 1 jobs can never be met",
        ),
        (
            wf({"a": {"run": "x"}, "j": {"run": "x", "needs_at_least": {"count": 0, "of": ["a"]}}}),
            "jobs.j.needs_at_least.count: must be a whole number >= 1, got 0",
        ),
        (
            wf({"a": {"run": "x"}, "j": {"run": "x", "needs_at_least": {"count": 1}}}),
            "jobs.j.needs_at_least: of: missing",
        ),
        (
            wf({"a": {"run": "x"}, "j": {"run": "x", "needs_at_least": {"count": 1, "of": ["b"]}}}),
            "jobs.j.needs_at_least.of[0]: unknown job 'b'",
        ),
        (
            wf({"a": {"run": "x"}, "j": {"run": "x", "needs_at_least": {"count": 1, "n": 1}}}),
            "jobs.j.needs_at_least.n: unknown field",
        ),
        (
            wf({"a": {"run": "x", "needs_at_least": {"count": 1, "of": ["a"]}}}),
            "jobs.a.needs_at_least.of[0]: job 'a' cannot need itself",
        ),
        (
            wf({"a": {"run": "x"}}, outputs={"v": "${{ needs.b.outputs.v }}"}),
            "outputs.v: needs.b: no such job",
        ),
        (wf({"a": {"run": "x"}}, outputs=["v"]), "outputs: expected a mapping of output names"),
        (wf({"a": {"run": "x"}}, outputs={"v": "${{ ("}), "outputs.v: "),
        (
            wf({"a": {"set": {"tag": "1"}}}, outputs={"v": "${{ needs.a.outputs.tga }}"}),
            "outputs.v: needs.a.outputs.tga: job 'a' sets no output 'tga' (it sets: tag) "
            "(did you mean 'tag'?)",
        ),
        (
            wf(
                {
                    "a": {"set": {"tag": "1"}},
                    "b": {"run": "${{ needs.a.outputs.x }}", "needs": ["a"]},
                }
            ),
            "jobs.b.run: needs.a.outputs.x: job 'a' sets no output 'x'",
        ),
    ],
)
def test_bad_steps_are_located_problems(raw: dict[str, Any], problem: str) -> None:
    problems = problems_of(raw)
    assert any(p.startswith(problem) for p in problems), problems


def test_needs_at_least_counts_as_upstream_for_references_and_cycles() -> None:
    ok = wf(
        {
            "a": {"run": "x"},
            "j": {"run": "${{ needs.a.result }}", "needs_at_least": {"count": 1, "of": ["a"]}},
        }
    )
    assert parse_workflow(ok).jobs["j"].upstream == ("a",)
    cyclic = wf(
        {
            "a": {"run": "x", "needs": ["j"]},
            "j": {"run": "x", "needs_at_least": {"count": 1, "of": ["a"]}},
        }
    )
    assert any("cycle" in p for p in problems_of(cyclic))


def test_a_job_whose_outputs_nobody_declares_is_not_checked_for_keys() -> None:
    # A worker's job may write any output: only set jobs' keys are known in advance.
    assert parse_workflow(wf({"a": {"run": "x"}}, outputs={"v": "${{ needs.a.outputs.any }}"}))


# --- set ------------------------------------------------------------------------------------


def test_a_set_job_succeeds_at_once_with_its_rendered_outputs() -> None:
    definition = dag(
        inputs={"version": InputSpec(default="1.0")},
        meta={"run": None, "set": {"tag": "v${{ inputs.version }}", "plain": "x"}},
        deploy={"needs": ("meta",), "run": "deploy ${{ needs.meta.outputs.tag }}"},
    )
    state = WFA.given(started(definition, version="2.0")).when(Advance(workflow_id=WF, now=at(1)))
    events = state.events()
    assert kinds(events) == [("JobSucceeded", "meta"), ("JobQueued", "deploy")]
    assert events[0] == JobSucceeded(
        workflow_id=WF,
        job="meta",
        attempt=1,
        epoch=0,
        outputs={"tag": "v2.0", "plain": "x"},
        ended_at=at(1),
    )
    assert isinstance(events[1], JobQueued)
    assert events[1].spec.run == "deploy v2.0"


def test_a_set_expression_that_cannot_be_evaluated_fails_the_job_naming_it() -> None:
    definition = dag(
        inputs={"raw": InputSpec(default="{not json")},
        parse={"run": None, "set": {"value": "${{ fromJSON(inputs.raw).x }}"}},
    )
    events = WFA.given(started(definition)).when(Advance(workflow_id=WF, now=at(1))).events()
    assert kinds(events) == [("JobFailed", "parse"), ("WorkflowFailed", "wf")]
    failed = events[0]
    assert isinstance(failed, JobFailed)
    assert failed.error.startswith("set.value: cannot evaluate '${{ fromJSON(inputs.raw).x }}'")
    assert not failed.retryable


# --- sleep / until --------------------------------------------------------------------------


SLEEPY = dag(nap={"run": None, "sleep": 600}, after={"needs": ("nap",)})


def test_a_sleep_starts_and_arms_a_durable_timer_for_its_end() -> None:
    reaction = when(History(started(SLEEPY)).state, now=2)
    assert reaction.decided == [
        JobSleepStarted(workflow_id=WF, job="nap", attempt=1, until=at(602), started_at=at(2))
    ]
    assert reaction.timers == [SleepTimer(workflow_id=WF, job="nap", attempt=1, due=at(602))]
    nap = reaction.state.job("nap")
    assert (nap.status, nap.sleep_until) == (JobStatus.QUEUED, at(602))
    view = workflow_view(reaction.state).jobs["nap"]
    assert (view.sleeping_until, view.waiting_for) == (at(602), None)


def test_the_sleep_timer_ends_the_job_and_what_follows_runs() -> None:
    history = History(started(SLEEPY))
    history.add(JobSleepStarted(workflow_id=WF, job="nap", attempt=1, until=at(600), started_at=T0))
    timer = SleepTimer(workflow_id=WF, job="nap", attempt=1, due=at(600))
    reaction = when(history.state, Fired(timer, from_stream=True), now=600.5)
    assert kinds(reaction.decided) == [("JobSucceeded", "nap"), ("JobQueued", "after")]
    assert reaction.state.job("nap").outputs == {"slept_until": at(600).isoformat()}


def test_a_sleep_timer_that_is_early_stale_or_repeated_decides_nothing() -> None:
    history = History(started(SLEEPY))
    history.add(JobSleepStarted(workflow_id=WF, job="nap", attempt=1, until=at(600), started_at=T0))
    timer = SleepTimer(workflow_id=WF, job="nap", attempt=1, due=at(600))
    assert when(history.state, Fired(timer), now=100).decided == []
    stale = timer.model_copy(update={"attempt": 2})
    assert when(history.state, Fired(stale), now=600).decided == []
    history.add(JobSucceeded(workflow_id=WF, job="nap", attempt=1, epoch=0, ended_at=at(600)))
    assert kinds(when(history.state, Fired(timer), now=601).decided) == [("JobQueued", "after")]


def test_until_in_the_past_wakes_at_once_and_the_timer_round_trips() -> None:
    definition = dag(nap={"run": None, "until": T0 - timedelta(days=1)})
    reaction = when(History(started(definition)).state, now=5)
    assert reaction.timers == [SleepTimer(workflow_id=WF, job="nap", attempt=1, due=at(5))]
    timer = reaction.timers[0]
    assert TIMERS.validate_json(timer.model_dump_json()) == timer


def test_cancelling_the_workflow_withdraws_a_sleeping_job() -> None:
    history = History(started(SLEEPY))
    history.add(JobSleepStarted(workflow_id=WF, job="nap", attempt=1, until=at(600), started_at=T0))
    reaction = when(history.state, Cancel(CancelRequest(workflow_id=WF, reason="stop")), now=3)
    assert kinds(reaction.decided) == [
        ("WorkflowCancelRequested", "wf"),
        ("JobCancelled", "nap"),
        ("JobCancelled", "after"),
        ("WorkflowCancelled", "wf"),
    ]
    assert reaction.decided[1] == JobCancelled(workflow_id=WF, job="nap", reason="stop", at=at(3))
    timer = SleepTimer(workflow_id=WF, job="nap", attempt=1, due=at(600))
    assert when(reaction.state, Fired(timer), now=600).decided == []


# --- needs_at_least -------------------------------------------------------------------------


def _race(**extra: Any) -> Any:
    return dag(
        a={"on_failure": OnFailure.CONTINUE},
        b={"on_failure": OnFailure.CONTINUE},
        c={"on_failure": OnFailure.CONTINUE},
        j={
            "needs_at_least": AtLeast(count=2, of=("a", "b", "c")),
            "run": "echo ${{ needs.a.outputs.v }}/${{ needs.c.result }}",
            **extra,
        },
    )


def test_an_n_of_m_join_runs_once_enough_succeeded_while_others_still_run() -> None:
    sim = Simulation()
    sim.start(_race())
    assert kinds(sim.advance()) == [("JobQueued", "a"), ("JobQueued", "b"), ("JobQueued", "c")]
    for name in "abc":
        sim.claim(name)
    sim.finish("a", {"v": "1"})
    assert kinds(sim.advance()) == []  # 1 of 2
    sim.finish("b", {})
    decided = sim.advance()
    assert kinds(decided) == [("JobQueued", "j")]  # c still runs
    assert isinstance(decided[0], JobQueued)
    assert decided[0].spec.run == "echo 1/running"


def test_an_n_of_m_join_is_skipped_once_its_count_cannot_be_reached() -> None:
    sim = Simulation()
    sim.start(_race())
    sim.advance()
    for name in "abc":
        sim.claim(name)
    sim.finish("a", "fatal")
    assert kinds(sim.advance()) == []  # b and c may still succeed
    sim.finish("b", "fatal")
    decided = sim.advance()
    assert kinds(decided) == [("JobSkipped", "j")]
    assert isinstance(decided[0], JobSkipped)
    assert decided[0].reason == "needs 2 of a, b, c to succeed; 0 did"


# --- workflow outputs -----------------------------------------------------------------------


def test_the_workflow_s_outputs_are_recorded_when_it_succeeds() -> None:
    definition = dag(
        meta={"run": None, "set": {"tag": "v1"}},
    ).model_copy(update={"outputs": {"tag": "${{ needs.meta.outputs.tag }}", "n": "2"}})
    events = WFA.given(started(definition)).when(Advance(workflow_id=WF, now=at(1))).events()
    assert events[-1] == WorkflowSucceeded(
        workflow_id=WF, ended_at=at(1), outputs={"tag": "v1", "n": "2"}
    )
    state = WFA.given(started(definition), *events).state
    assert workflow_view(state).outputs == {"tag": "v1", "n": "2"}


def test_outputs_that_cannot_be_rendered_fail_the_workflow_naming_them() -> None:
    definition = dag(meta={"run": None, "set": {"raw": "{"}}).model_copy(
        update={"outputs": {"v": "${{ fromJSON(needs.meta.outputs.raw) }}"}}
    )
    events = WFA.given(started(definition)).when(Advance(workflow_id=WF, now=at(1))).events()
    ended = events[-1]
    assert isinstance(ended, WorkflowFailed)
    assert ended.reason.startswith("cannot render the workflow's outputs")


def test_a_workflow_without_outputs_succeeds_with_none() -> None:
    events = WFA.given(started(dag(a={}))).when(Advance(workflow_id=WF, now=at(1))).events()
    assert kinds(events) == [("JobQueued", "a")]
    assert WorkflowSucceeded(workflow_id=WF, ended_at=T0).outputs == {}


def test_no_worker_can_claim_a_sleeping_job() -> None:
    state = History(
        started(SLEEPY),
        JobSleepStarted(workflow_id=WF, job="nap", attempt=1, until=at(600), started_at=T0),
    ).state.job("nap")
    claim = ClaimJob(
        workflow_id=WF,
        job="nap",
        attempt=1,
        worker_id="w1",
        dispatch_seq=1,
        lease_ttl=30,
        now=at(1),
    )
    with pytest.raises(ClaimRefused, match="nap is a sleep: no worker runs it"):
        job.decide(state, claim)


def test_a_set_job_counts_one_attempt() -> None:
    sim = Simulation()
    sim.start(dag(meta={"run": None, "set": {"x": "1"}}))
    sim.advance()
    assert (sim.state.job("meta").attempt, workflow_view(sim.state).jobs["meta"].attempts) == (1, 1)


def test_a_rerun_sleeps_again_on_a_timer_of_its_own_and_recomputes_set_outputs() -> None:
    definition = dag(
        meta={"run": None, "set": {"at": "${{ inputs.n }}"}},
        nap={"run": None, "sleep": 60, "needs": ("meta",)},
        inputs={"n": InputSpec(default="1")},
    )
    sim = Simulation()
    sim.start(definition)
    sim.run()
    assert sim.state.status is not None and sim.state.status.value == "succeeded"
    sim.tick(5)
    rerun = RerunWorkflow(workflow_id=WF, job="meta", by="ops", now=sim.now)
    reaction = when(sim.state, now=sim.clock)  # nothing to do before the rerun
    assert reaction.decided == []
    sim.decide(rerun)
    reaction = when(sim.state, now=sim.clock)
    assert kinds(reaction.decided) == [("JobSucceeded", "meta"), ("JobSleepStarted", "nap")]
    assert reaction.timers == [
        SleepTimer(workflow_id=WF, job="nap", attempt=2, due=at(sim.clock + 60))
    ]
    assert reaction.state.job("meta").attempt == 2
