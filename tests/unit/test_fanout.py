"""Fan-out (strategy.matrix and for_each): validation, the workflow actor's decisions, the fold."""

from __future__ import annotations

import json
from typing import Any

import pytest

from actors import job, workflow
from actors.commands import Advance
from actors.definitions import load_workflow_text, parse_workflow
from actors.definitions.mapping import definition_mapping
from actors.workflow import WorkflowState
from events.base import Event
from events.catalog import (
    JobEvent,
    JobFailed,
    JobFannedIn,
    JobFannedOut,
    JobQueued,
    JobStatus,
    JobSucceeded,
    WorkflowStarted,
    WorkflowStatus,
)
from events.definition import WorkflowDefinition
from events.errors import InvalidWorkflow
from tests.unit.fanout_simulation import FanOutSimulation
from tests.unit.given_when_then import T0, at, workflow_actor

WF = "wf-1"
WFA = workflow_actor(WF)

FOR_EACH = """
name: fan
jobs:
  list:
    run: echo
  each:
    needs: [list]
    for_each: ${{ fromJSON(needs.list.outputs.items) }}
    run: echo ${{ item }} ${{ index }}
  after:
    needs: [each]
    run: echo '${{ needs.each.outputs.v }}'
"""

MATRIX = """
name: mx
jobs:
  test:
    strategy:
      matrix: {os: [linux, mac], py: ["3.11", "3.12"]}
      max_parallel: 2
    labels: ["${{ matrix.os }}"]
    env: {PY: "${{ matrix.py }}"}
    run: echo ${{ matrix.os }} ${{ index }}
"""


def _items(*values: Any) -> dict[str, str]:
    return {"items": json.dumps(list(values))}


# --- validation -----------------------------------------------------------------------------


def test_a_matrix_expands_to_its_combinations_with_include_and_exclude() -> None:
    definition = load_workflow_text(
        """
name: mx
jobs:
  t:
    strategy:
      matrix:
        os: [a, b]
        py: ["3.11", "3.12"]
        exclude: [{os: a, py: "3.11"}]
        include: [{os: b, extra: x}, {os: c, py: "3.13"}]
    run: echo ${{ matrix.os }}
"""
    )
    fan = definition.jobs["t"].fan_out
    assert fan is not None and fan.is_matrix and fan.fail_fast and fan.max_parallel is None
    assert fan.items == (
        {"os": "a", "py": "3.12"},
        {"os": "b", "py": "3.11", "extra": "x"},
        {"os": "b", "py": "3.12", "extra": "x"},
        {"os": "c", "py": "3.13"},
    )


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ("{strategy: {matrix: [a, b]}, run: x}", "jobs.j.strategy.matrix: expected a mapping"),
        ("{strategy: {matrix: {os: []}}, run: x}", "jobs.j.strategy.matrix.os: expected a non"),
        ("{strategy: {max_parallel: 2}, run: x}", "jobs.j.strategy: strategy needs a matrix"),
        ("{strategy: {matrix: {os: [a]}, fail-fast: false}, run: x}", "jobs.j.strategy.fail-fast"),
        ("{strategy: {matrix: {os: [a]}, max_parallel: 0}, run: x}", "max_parallel: must be a"),
        ("{for_each: '${{ inputs.x }} and more', run: x}", "jobs.j.for_each: expected a list"),
        ("{for_each: 3, run: x}", "jobs.j.for_each: expected a list, or one"),
        ("{for_each: [1], max_parallel: 1, strategy: {max_parallel: 2}, run: x}", "not both"),
        ("{max_parallel: 2, run: x}", "jobs.j.max_parallel: only a job with strategy.matrix"),
        ("{run: 'echo ${{ item }}'}", "jobs.j.run: item is only known in a job with"),
        ("{for_each: [1], run: 'echo ${{ matrix.os }}'}", "jobs.j.run: matrix is only known"),
        ("{for_each: '${{ item }}', run: x}", "jobs.j.for_each: item is not known in for_each"),
        ("{for_each: [1], if: 'item == 1', run: x}", "jobs.j.if: item is not known in if"),
        ("{if: 'index == 1', run: x}", "jobs.j.if: index is only known in a job with"),
        ("{strategy: {matrix: {os: [a]}, }, for_each: [1], run: x}", "matrix or for_each, not"),
        ("{strategy: {matrix: {os: [a], exclude: [{os: a}]}}, run: x}", "no combination left"),
    ],
)
def test_a_malformed_fan_out_is_a_located_problem(job: str, expected: str) -> None:
    with pytest.raises(InvalidWorkflow) as caught:
        load_workflow_text(f"name: w\njobs:\n  j: {job}\n")
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_a_job_named_like_an_instance_is_refused() -> None:
    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow(
            {"name": "w", "jobs": {"t": {"for_each": [1, 2], "run": "x"}, "t-1": {"run": "y"}}}
        )
    assert caught.value.problems == ["jobs.t-1: the name is taken by an instance of 't'; rename it"]


def test_a_fan_out_reads_back_from_its_mapping() -> None:
    for text in (FOR_EACH, MATRIX):
        definition = load_workflow_text(text)
        assert parse_workflow(definition_mapping(definition)) == definition


# --- the workflow actor ---------------------------------------------------------------------


def _started(definition: WorkflowDefinition) -> WorkflowStarted:
    return WorkflowStarted(workflow_id=WF, definition=definition, started_at=T0)


def _succeeded(job: str, outputs: dict[str, str]) -> list[Event]:
    queued = JobQueued(workflow_id=WF, job=job, attempt=1, spec={}, queued_at=T0)
    done = JobSucceeded(workflow_id=WF, job=job, attempt=1, epoch=1, outputs=outputs, ended_at=T0)
    return [queued, done]


def test_given_its_list_when_advanced_then_the_job_fans_out_over_the_items() -> None:
    definition = load_workflow_text(FOR_EACH)
    decided = (
        WFA.given(_started(definition), *_succeeded("list", _items("a", {"k": 1})))
        .when(Advance(workflow_id=WF, now=at(1)))
        .events()
    )
    assert decided == [
        JobFannedOut(workflow_id=WF, job="each", attempt=1, items=["a", {"k": 1}], at=at(1))
    ]


def test_given_a_fan_out_when_advanced_then_instances_are_queued_with_item_and_index() -> None:
    definition = load_workflow_text(FOR_EACH)
    fanned = JobFannedOut(workflow_id=WF, job="each", attempt=1, items=["a", {"k": 1}], at=T0)
    decided = (
        WFA.given(_started(definition), *_succeeded("list", _items("a", {"k": 1})), fanned)
        .when(Advance(workflow_id=WF, now=at(1)))
        .events()
    )
    assert [(e.job, e.spec.run) for e in decided if isinstance(e, JobQueued)] == [
        ("each-0", "echo a 0"),
        ("each-1", 'echo {"k":1} 1'),
    ]


def test_given_a_list_that_is_not_a_list_then_the_job_fails_saying_where() -> None:
    decided = (
        WFA.given(_started(load_workflow_text(FOR_EACH)), *_succeeded("list", {"items": "{}"}))
        .when(Advance(workflow_id=WF, now=at(1)))
        .events()
    )
    assert [type(e).__name__ for e in decided] == ["JobFailed", "JobSkipped", "WorkflowFailed"]
    assert isinstance(decided[0], JobFailed) and decided[0].attempt == 0
    assert decided[0].error == "jobs.each.for_each: expected a JSON list of items, got a mapping"


def test_for_each_runs_each_item_and_gathers_outputs_in_item_order() -> None:
    sim = FanOutSimulation()
    sim.start(load_workflow_text(FOR_EACH))
    sim.run({"list": [_items("x", "y", "z")], "each-2": [{"v": "Z"}], "each-0": [{"v": "X"}]})
    assert sim.state.status is WorkflowStatus.SUCCEEDED
    assert [sim.state.job(f"each-{i}").spec.run for i in range(3)] == [
        "echo x 0",
        "echo y 1",
        "echo z 2",
    ]
    assert sim.state.job("each").outputs == {"v": '["X",null,"Z"]'}
    assert sim.state.job("after").spec.run == """echo '["X",null,"Z"]'"""
    assert sim.job_events("each") == ["JobFannedOut", "JobFannedIn"]


def test_a_matrix_renders_its_values_in_run_env_and_labels_never_beyond_max_parallel() -> None:
    sim = FanOutSimulation()
    sim.start(load_workflow_text(MATRIX))
    sim.run()
    assert sim.state.status is WorkflowStatus.SUCCEEDED
    specs = [sim.state.job(f"test-{i}").spec for i in range(4)]
    assert [(s.run, s.labels, s.env["PY"]) for s in specs] == [
        ("echo linux 0", ("linux",), "3.11"),
        ("echo linux 1", ("linux",), "3.12"),
        ("echo mac 2", ("mac",), "3.11"),
        ("echo mac 3", ("mac",), "3.12"),
    ]
    assert sim.most_active == 2


def test_fail_fast_cancels_the_rest_and_fails_the_job() -> None:
    text = FOR_EACH.replace("run: echo ${{ item }}", "max_parallel: 2\n    run: echo ${{ item }}")
    sim = FanOutSimulation()
    sim.start(load_workflow_text(text))
    sim.advance()
    sim.claim("list")
    sim.finish("list", _items(*range(6)))
    sim.advance()
    for name in ("each-0", "each-1"):
        sim.claim(name)
    sim.finish("each-1", "fatal")
    sim.run()
    assert sim.status_of("each-0") == "cancelled"
    assert sim.state.job("each").status is JobStatus.FAILED
    assert (
        sim.state.job("each").error == "1 of 6 instances failed: each-1; 4 not started (fail_fast)"
    )
    assert sim.status_of("after") == "skipped"
    assert sim.state.status is WorkflowStatus.FAILED
    assert sim.state.end_reason == "1 job(s) failed: each"


def test_without_fail_fast_every_instance_runs_and_the_job_still_fails() -> None:
    text = FOR_EACH.replace("run: echo ${{ item }}", "fail_fast: false\n    run: echo ${{ item }}")
    sim = FanOutSimulation()
    sim.start(load_workflow_text(text))
    sim.run({"list": [_items(1, 2, 3)], "each-0": ["fatal"]})
    assert [sim.status_of(f"each-{i}") for i in range(3)] == ["failed", "succeeded", "succeeded"]
    assert sim.state.job("each").status is JobStatus.FAILED


def test_on_failure_continue_lets_the_job_succeed_with_nulls_for_failed_instances() -> None:
    text = FOR_EACH.replace(
        "run: echo ${{ item }}", "on_failure: continue\n    run: echo ${{ item }}"
    )
    sim = FanOutSimulation()
    sim.start(load_workflow_text(text))
    sim.run({"list": [_items(1, 2)], "each-0": ["fatal"], "each-1": [{"v": "ok"}]})
    assert sim.state.job("each").status is JobStatus.SUCCEEDED
    assert sim.state.job("each").outputs == {"v": '[null,"ok"]'}
    assert sim.state.status is WorkflowStatus.SUCCEEDED


def test_an_empty_list_succeeds_at_once() -> None:
    sim = FanOutSimulation()
    sim.start(load_workflow_text(FOR_EACH))
    sim.run({"list": [_items()]})
    assert sim.job_events("each") == ["JobFannedOut", "JobFannedIn"]
    assert sim.state.status is WorkflowStatus.SUCCEEDED


def test_cancelling_the_workflow_stops_the_instances_and_cancels_the_job() -> None:
    sim = FanOutSimulation()
    sim.start(load_workflow_text(FOR_EACH))
    sim.advance()
    sim.claim("list")
    sim.finish("list", _items(1, 2, 3))
    sim.advance()
    sim.claim("each-0")
    sim.cancel()
    sim.run()
    assert [sim.status_of(f"each-{i}") for i in range(3)] == ["cancelled"] * 3
    assert sim.status_of("each") == "cancelled"
    assert sim.state.status is WorkflowStatus.CANCELLED


def test_an_instance_retries_as_any_job_does() -> None:
    text = FOR_EACH.replace("run: echo ${{ item }}", "retry: 2\n    run: echo ${{ item }}")
    sim = FanOutSimulation()
    sim.start(load_workflow_text(text))
    sim.run({"list": [_items(1)], "each-0": ["fail"]})
    assert sim.state.job("each-0").attempt == 2
    assert sim.state.status is WorkflowStatus.SUCCEEDED


def test_the_tally_replayed_from_the_log_equals_the_one_folded_as_it_went() -> None:
    sim = FanOutSimulation()
    sim.start(
        load_workflow_text(FOR_EACH.replace("run: echo ${{", "max_parallel: 3\n    run: echo ${{"))
    )
    sim.run({"list": [_items(*range(10))], "each-4": ["fatal"]})
    replayed = workflow.replay(sim.log, WorkflowState(workflow_id=WF))
    assert replayed.fanouts == sim.state.fanouts
    fan = replayed.fanouts["each"]
    assert (fan.count, fan.active, fan.failed) == (10, 0, 1)
    assert fan.ended == fan.created
    one_by_one = WorkflowState(workflow_id=WF)
    for record in sim.log:
        one_by_one = workflow.evolve(one_by_one, record.event)
    assert one_by_one.fanouts == sim.state.fanouts


def test_an_operators_retry_fans_the_job_out_again() -> None:
    from actors.commands import RetryWorkflow

    sim = FanOutSimulation()
    sim.start(load_workflow_text(FOR_EACH))
    sim.run({"list": [_items(1, 2)], "each-1": ["fatal"]})
    assert sim.state.status is WorkflowStatus.FAILED
    sim.decide(RetryWorkflow(workflow_id=WF, by="ops", now=sim.now))
    sim.run()
    assert sim.state.status is WorkflowStatus.SUCCEEDED
    assert sim.state.job("each").attempt == 2
    assert [sim.state.job(f"each-{i}").attempt for i in range(2)] == [2, 2]
    assert isinstance(sim.log[-2].event, JobSucceeded | JobFannedIn)
    assert sim.job_events("each-0") == [
        "JobQueued",
        "JobStarted",
        "JobSucceeded",
        "JobReopened",
        "JobQueued",
        "JobStarted",
        "JobSucceeded",
    ]
    # Each instance's own history says what the workflow's fold says of it.
    for name in ("each-0", "each-1"):
        own = [r for r in sim.log if isinstance(r.event, JobEvent) and r.event.job == name]
        assert job.replay(own) == sim.state.job(name)


def test_status_lists_the_instances_after_their_job() -> None:
    from projections.views import workflow_view

    sim = FanOutSimulation()
    sim.start(
        load_workflow_text(FOR_EACH.replace("run: echo ${{", "max_parallel: 1\n    run: echo ${{"))
    )
    sim.advance()
    sim.claim("list")
    sim.finish("list", _items("a", "b"))
    sim.advance()
    view = workflow_view(sim.state)
    assert list(view.jobs) == ["list", "each", "each-0", "each-1", "after"]
    assert [view.jobs[n].status for n in view.jobs] == [
        "succeeded",
        "running",
        "queued",
        "pending",
        "pending",
    ]


def test_the_builder_makes_the_same_fan_outs_as_yaml() -> None:
    from sdk.builder import INDEX, ITEM, Workflow, for_each_of, matrix_value

    wf = Workflow("fan")
    listing = wf.job("list", run="echo")
    each = wf.job(
        "each", needs=[listing], for_each=for_each_of(listing, "items"), run=f"echo {ITEM} {INDEX}"
    )
    wf.job("after", needs=[each], run=f"echo '{each.output('v')}'")
    assert wf.build() == load_workflow_text(FOR_EACH)

    mx = Workflow("mx")
    mx.job(
        "test",
        matrix={"os": ["linux", "mac"], "py": ["3.11", "3.12"]},
        max_parallel=2,
        labels=[matrix_value("os")],
        env={"PY": matrix_value("py")},
        run=f"echo {matrix_value('os')} {INDEX}",
    )
    built = mx.build()
    expected = load_workflow_text(MATRIX)
    assert built.jobs["test"].fan_out == expected.jobs["test"].fan_out
    assert built == expected


def test_a_fanned_out_jobs_end_is_appended_after_its_instances_events() -> None:
    from actors.engine.reactions import stages
    from events.catalog import JobCancelled

    sim = FanOutSimulation()
    sim.start(load_workflow_text(FOR_EACH))
    sim.advance()
    sim.claim("list")
    sim.finish("list", _items(1, 2))
    sim.advance()
    withdrawn = JobCancelled(workflow_id=WF, job="each-0", reason="stop", at=T0)
    ended = JobCancelled(workflow_id=WF, job="each", reason="stop", at=T0)
    other = JobCancelled(workflow_id=WF, job="each-1", reason="stop", at=T0)
    planned = stages(sim.state, [withdrawn, other, ended])
    assert [[a.events[0].job for a in stage] for stage in planned] == [
        ["each-0", "each-1"],
        ["each"],
    ]


def test_a_workflow_timeout_stops_the_instances_and_ends_the_job() -> None:
    text = FOR_EACH.replace("name: fan\n", "name: fan\ntimeout: 1m\n")
    sim = FanOutSimulation()
    sim.start(load_workflow_text(text))
    sim.advance()
    sim.claim("list")
    sim.finish("list", _items(1, 2, 3))
    sim.advance()
    sim.claim("each-0")
    sim.tick(120)
    sim.timeout()
    sim.run()
    assert sim.state.status is WorkflowStatus.FAILED
    assert sim.job_events("each-0")[-2:] == ["JobCancelRequested", "JobCancelled"]
    assert sim.job_events("each-1")[-1] == "JobCancelled"
    assert sim.status_of("each") == "cancelled"
    assert sim.state.job("each").cancel_reason == "the workflow timed out after 1m"
