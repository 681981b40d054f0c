"""Skipping one fan-out instance (``jetwork skip ID JOB-INDEX``): given / when / then on the
workflow actor, and what the fan-out makes of it to its end (``FanOutSimulation``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from actors import workflow
from actors.commands import Advance, RetryWorkflow, SkipJob
from actors.definitions import load_workflow_text
from actors.workflow import WorkflowState
from events.base import Event
from events.catalog import (
    JobFannedOut,
    JobQueued,
    JobSkipped,
    JobStatus,
    JobSucceeded,
    WorkflowStarted,
    WorkflowStatus,
)
from events.errors import CommandRefused
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
    max_parallel: 2
    fail_fast: false
    run: echo ${{ item }}
  after:
    needs: [each]
    run: echo '${{ needs.each.outputs.v }}' ${{ needs.each.result }}
"""


def _items(*values: Any) -> dict[str, str]:
    return {"items": json.dumps(list(values))}


def _given_fanned_out(count: int) -> list[Event]:
    definition = load_workflow_text(FOR_EACH)
    items = list(range(count))
    return [
        WorkflowStarted(workflow_id=WF, definition=definition, started_at=T0),
        JobQueued(workflow_id=WF, job="list", attempt=1, spec={}, queued_at=T0),
        JobSucceeded(
            workflow_id=WF, job="list", attempt=1, epoch=1, outputs=_items(*items), ended_at=T0
        ),
        JobFannedOut(workflow_id=WF, job="each", attempt=1, items=items, at=T0),
        JobQueued(workflow_id=WF, job="each-0", attempt=1, spec={}, queued_at=T0),
        JobQueued(workflow_id=WF, job="each-1", attempt=1, spec={}, queued_at=T0),
    ]


def skip(job: str, **outputs: str) -> SkipJob:
    return SkipJob(
        workflow_id=WF, job=job, by="ops", reason="known bad", outputs=outputs, now=at(5)
    )


def test_given_a_queued_instance_when_skipped_then_it_alone_is_skipped_with_its_outputs() -> None:
    WFA.given(*_given_fanned_out(4)).when(skip("each-1", v="given")).then(
        JobSkipped(
            workflow_id=WF,
            job="each-1",
            reason="skipped by ops: known bad",
            at=at(5),
            by="ops",
            outputs={"v": "given"},
        )
    )


def test_given_an_instance_not_started_yet_when_skipped_then_its_turn_is_passed_over() -> None:
    state = WFA.given(*_given_fanned_out(4)).when(skip("each-2")).state_after()
    assert state.job("each-2").status is JobStatus.SKIPPED
    assert state.fanouts["each"].created == 2  # each-2 ended before being started
    done = JobSucceeded(workflow_id=WF, job="each-0", attempt=1, epoch=0, ended_at=at(6))
    state = workflow.evolve(state, done)
    queued = workflow.decide(state, Advance(workflow_id=WF, now=at(7)))
    assert [(type(e).__name__, e.job) for e in queued] == [("JobQueued", "each-3")]


def test_an_index_beyond_the_instances_is_refused_naming_the_range() -> None:
    WFA.given(*_given_fanned_out(4)).when(skip("each-4")).then_raises(
        CommandRefused, r"job 'each' has 4 instances \(each-0 to each-3\), no 'each-4'"
    )


def test_an_instance_of_a_job_not_fanned_out_yet_is_an_unknown_job() -> None:
    WFA.given(*_given_fanned_out(4)[:1]).when(skip("each-0")).then_raises(
        CommandRefused, r"it has no job 'each-0' \(its jobs: after, each, list\)"
    )


def test_skipping_a_running_instance_is_refused_as_for_any_job() -> None:
    sim = FanOutSimulation()
    sim.start(load_workflow_text(FOR_EACH))
    sim.advance()
    sim.claim("list")
    sim.finish("list", _items(1, 2, 3))
    sim.advance()
    sim.claim("each-0")
    with pytest.raises(CommandRefused, match="job 'each-0' is running"):
        sim.decide(skip("each-0"))


def test_an_instance_of_an_ended_fan_out_is_refused() -> None:
    sim = FanOutSimulation()
    sim.start(load_workflow_text(FOR_EACH))
    sim.advance()
    sim.claim("list")
    sim.finish("list", _items(1))
    sim.advance()
    sim.claim("each-0")
    sim.finish("each-0", "ok")
    sim.advance()  # fanned in; `after` queued
    assert sim.state.job("each").status is JobStatus.SUCCEEDED
    with pytest.raises(
        CommandRefused,
        match="job 'each' is succeeded; an instance can be skipped while its fan-out runs",
    ):
        sim.decide(skip("each-0"))


def _run_to_instances(count: int) -> FanOutSimulation:
    sim = FanOutSimulation()
    sim.start(load_workflow_text(FOR_EACH))
    sim.advance()
    sim.claim("list")
    sim.finish("list", _items(*range(count)))
    sim.advance()
    return sim


def test_a_failed_instance_skipped_counts_as_succeeded_by_operator_in_the_fan_in() -> None:
    sim = _run_to_instances(3)
    sim.claim("each-0")
    sim.finish("each-0", "fatal")
    assert sim.state.fanouts["each"].failed == 1
    sim.decide(skip("each-0", v="by hand"))
    assert sim.state.fanouts["each"].failed == 0
    sim.run({"each-1": [{"v": "one"}], "each-2": [{"v": "two"}]})
    assert sim.state.status is WorkflowStatus.SUCCEEDED
    assert sim.state.job("each").outputs == {"v": '["by hand","one","two"]'}
    assert sim.state.job("after").spec.run == """echo '["by hand","one","two"]' success"""


def test_an_instance_skipped_without_outputs_leaves_null_in_its_slot() -> None:
    sim = _run_to_instances(3)
    sim.decide(skip("each-2"))  # before its turn (max_parallel 2)
    sim.run({"each-0": [{"v": "zero"}], "each-1": [{"v": "one"}]})
    assert sim.state.status is WorkflowStatus.SUCCEEDED
    assert sim.state.job("each").outputs == {"v": '["zero","one",null]'}
    assert sim.job_events("each-2") == ["JobSkipped"]
    assert sim.most_active <= 2


def test_skipping_every_instance_left_ends_the_fan_out() -> None:
    sim = _run_to_instances(4)
    for name in ("each-3", "each-2", "each-1", "each-0"):
        sim.decide(skip(name))
    sim.run()
    assert sim.state.job("each").status is JobStatus.SUCCEEDED
    assert sim.state.status is WorkflowStatus.SUCCEEDED


def test_the_tally_after_a_skip_replays_the_same_from_the_log() -> None:
    sim = _run_to_instances(5)
    sim.decide(skip("each-3"))
    sim.run({"each-0": ["fatal"]})
    replayed = workflow.replay(sim.log, WorkflowState(workflow_id=WF))
    assert replayed.fanouts == sim.state.fanouts
    assert replayed.fanouts["each"].ended == 5


def test_a_retry_after_a_skip_before_its_turn_reopens_that_instance_too() -> None:
    sim = _run_to_instances(4)
    sim.decide(skip("each-3"))
    sim.run({"each-0": ["fatal"]})
    assert sim.state.status is WorkflowStatus.FAILED
    sim.decide(RetryWorkflow(workflow_id=WF, by="ops", now=sim.now))
    sim.run()
    assert sim.state.status is WorkflowStatus.SUCCEEDED
    assert [sim.status_of(f"each-{i}") for i in range(4)] == ["succeeded"] * 4


def test_fail_fast_counts_as_not_started_only_the_instances_never_queued_nor_skipped() -> None:
    sim = FanOutSimulation()
    sim.start(load_workflow_text(FOR_EACH.replace("fail_fast: false", "fail_fast: true")))
    sim.advance()
    sim.claim("list")
    sim.finish("list", _items(*range(5)))
    sim.advance()
    sim.decide(skip("each-4"))
    sim.claim("each-0")
    sim.finish("each-0", "fatal")
    sim.run()
    assert sim.state.job("each").error == (
        "1 of 5 instances failed: each-0; 2 not started (fail_fast)"
    )
