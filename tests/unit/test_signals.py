"""Signals (``wait_for: {signal: NAME}``), no I/O: given a workflow's log, when a signal, a
decision or a timer comes, then these events (``actors.signals`` through ``reactions.react``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from actors import workflow
from actors.commands import Advance, CancelWorkflow, SignalWorkflow
from actors.definitions import parse_workflow
from actors.definitions.mapping import definition_mapping
from actors.engine.reactions import Cancel, Control, Fired, react
from actors.engine.timers import WaitTimeoutTimer
from events.catalog import (
    JobSucceeded,
    JobWaiting,
    SignalReceived,
    WorkflowSucceeded,
)
from events.definition import JobDefinition, WaitFor, WorkflowDefinition
from events.errors import CommandRefused
from events.requests import CancelRequest, SignalRequest
from tests.unit.given_when_then import at
from tests.unit.test_reactions import History, queued, succeeded
from tests.unit.test_workflow_actor import WF, kinds, started

DAY = 86400.0


def approval(timeout: float | None = DAY, **approve: Any) -> WorkflowDefinition:
    """build -> approve (waits for the signal ``approve``) -> deploy."""
    return WorkflowDefinition(
        name="approval",
        jobs={
            "build": JobDefinition(name="build", run="./build"),
            "approve": JobDefinition(
                name="approve",
                needs=("build",),
                wait_for=WaitFor(signal="approve", timeout=timeout),
                **approve,
            ),
            "deploy": JobDefinition(
                name="deploy", needs=("approve",), run="deploy ${{ needs.approve.outputs.by }}"
            ),
        },
    )


def signal(signal_id: str | None = "s1", name: str = "approve", **data: Any) -> Control:
    request = SignalRequest(
        workflow_id=WF, name=name, data=data or {"by": "ann"}, signal_id=signal_id, by="ann"
    )
    return Control(request)


def waiting(attempt: int = 1, timeout: float | None = DAY) -> JobWaiting:
    deadline = at(2 + timeout) if timeout is not None else None
    return JobWaiting(
        workflow_id=WF,
        job="approve",
        attempt=attempt,
        signal="approve",
        deadline=deadline,
        at=at(2),
    )


def built(definition: WorkflowDefinition | None = None, *events: Any) -> History:
    """The log once ``build`` succeeded (``approve`` is ready), then ``events``."""
    return History(started(definition or approval()), queued("build"), succeeded("build"), *events)


def received(signal_id: str = "s1", **data: Any) -> SignalReceived:
    return SignalReceived(
        workflow_id=WF,
        name="approve",
        signal_id=signal_id,
        data=data or {"by": "ann"},
        by="ann",
        at=at(1),
    )


def test_a_ready_wait_job_waits_on_no_worker_and_arms_its_timeout() -> None:
    history = History(started(approval()))
    history.add(queued("build"))
    reaction = react(history.state, history.add(succeeded("build")), at(2))
    assert kinds(reaction.decided) == [("JobWaiting", "approve")]
    assert reaction.state.job("approve").status == "waiting"
    assert reaction.timers == [
        WaitTimeoutTimer(workflow_id=WF, job="approve", attempt=1, due=at(2 + DAY))
    ]


def test_a_signal_to_a_waiting_job_succeeds_it_with_the_data_as_outputs() -> None:
    history = built(None, waiting())
    reaction = react(history.state, [signal(by="ann", ok=True, n=3)], at(5))
    assert kinds(reaction.decided) == [
        ("SignalReceived", "wf"),
        ("SignalConsumed", "wf"),
        ("JobSucceeded", "approve"),
        ("JobQueued", "deploy"),
    ]
    done = reaction.decided[2]
    assert isinstance(done, JobSucceeded)
    assert done.outputs == {"by": "ann", "ok": "true", "n": "3"}
    assert done.result == {"by": "ann", "ok": True, "n": 3}
    assert reaction.applied == {0: True}
    deploy = reaction.decided[3]
    assert deploy.spec.run == "deploy ann"  # type: ignore[attr-defined]


def test_a_signal_sent_before_the_wait_is_kept_and_consumed_when_it_starts() -> None:
    history = History(started(approval()), queued("build"))
    early = react(history.state, [signal()], at(1))
    assert kinds(early.decided) == [("SignalReceived", "wf")]
    history.add(*early.decided)
    assert [s.signal_id for s in history.state.signals] == ["s1"]
    reaction = react(history.state, history.add(succeeded("build")), at(2))
    assert kinds(reaction.decided) == [
        ("JobWaiting", "approve"),
        ("SignalConsumed", "wf"),
        ("JobSucceeded", "approve"),
        ("JobQueued", "deploy"),
    ]
    assert reaction.state.signals == ()


def test_the_same_signal_id_again_records_nothing() -> None:
    history = History(started(approval()), queued("build"), received("s1"))
    reaction = react(history.state, [signal("s1")], at(5))
    assert reaction.decided == [] and reaction.applied == {0: False}


def test_signals_without_an_id_are_numbered() -> None:
    state = built(None, received("signal-1")).state
    command = SignalWorkflow(workflow_id=WF, by="x", name="approve", now=at(3))
    (event,) = workflow.decide(state, command)
    assert isinstance(event, SignalReceived) and event.signal_id == "signal-2"


@pytest.mark.parametrize(
    ("given", "name", "why"),
    [
        ("ended", "approve", "it has ended (succeeded)"),
        (
            "running",
            "aprove",
            "no job of it waits for signal 'aprove' (its jobs wait for: approve)",
        ),
        ("cancelling", "approve", "it is being cancelled"),
    ],
)
def test_a_signal_that_makes_no_sense_is_refused(given: str, name: str, why: str) -> None:
    history = built(None, waiting())
    if given == "ended":
        history.add(WorkflowSucceeded(workflow_id=WF, ended_at=at(3)))
    elif given == "cancelling":
        state = history.state
        history.add(*workflow.decide(state, CancelWorkflow(workflow_id=WF, now=at(3)))[:1])
    reaction = react(history.state, [signal(name=name)], at(5))
    assert reaction.refused == {0: f"cannot signal workflow 'wf-1': {why}"}
    assert ("SignalReceived", "wf") not in kinds(reaction.decided)
    with pytest.raises(CommandRefused):
        workflow.decide(history.state, SignalWorkflow(workflow_id=WF, by="x", name=name, now=at(5)))


def test_a_signal_to_an_unknown_workflow_is_not_found() -> None:
    from actors.workflow import WorkflowState

    reaction = react(WorkflowState(workflow_id=WF), [signal()], at(1))
    assert reaction.unknown == [0]


def test_the_timeout_fails_a_waiting_job_and_its_workflow() -> None:
    history = built(None, waiting())
    timer = WaitTimeoutTimer(workflow_id=WF, job="approve", attempt=1, due=at(2 + DAY))
    reaction = react(history.state, [Fired(timer, from_stream=True)], at(2 + DAY))
    assert kinds(reaction.decided) == [
        ("JobFailed", "approve"),
        ("JobSkipped", "deploy"),
        ("WorkflowFailed", "wf"),
    ]
    failed = reaction.decided[0]
    assert failed.error == "no signal 'approve' arrived within 1d (wait_for timeout)"  # type: ignore[attr-defined]
    assert failed.timed_out  # type: ignore[attr-defined]


def test_on_failure_continue_applies_to_a_timed_out_wait() -> None:
    history = built(approval(on_failure="continue"), waiting())
    timer = WaitTimeoutTimer(workflow_id=WF, job="approve", attempt=1, due=at(2 + DAY))
    reaction = react(history.state, [Fired(timer)], at(2 + DAY))
    assert kinds(reaction.decided)[-1] == ("WorkflowSucceeded", "wf")


def test_a_timer_after_the_signal_or_too_early_decides_nothing() -> None:
    timer = WaitTimeoutTimer(workflow_id=WF, job="approve", attempt=1, due=at(2 + DAY))
    history = built(None, waiting())
    assert react(history.state, [Fired(timer)], at(100)).decided == []
    history.add(
        received(),
        JobSucceeded(workflow_id=WF, job="approve", attempt=1, epoch=0, ended_at=at(3)),
    )
    assert kinds(react(history.state, [Fired(timer)], at(2 + DAY)).decided) == [
        ("JobQueued", "deploy")
    ]


def test_cancelling_withdraws_a_waiting_job() -> None:
    history = built(None, waiting())
    reaction = react(history.state, [Cancel(CancelRequest(workflow_id=WF))], at(3))
    assert kinds(reaction.decided) == [
        ("WorkflowCancelRequested", "wf"),
        ("JobCancelled", "approve"),
        ("JobCancelled", "deploy"),
        ("WorkflowCancelled", "wf"),
    ]


def test_a_wait_without_timeout_arms_no_timer_and_advance_stays_put() -> None:
    history = built(approval(timeout=None), waiting(timeout=None))
    reaction = react(history.state, [], at(3))
    assert reaction.decided == [] and reaction.timers == []
    assert workflow.decide(history.state, Advance(workflow_id=WF, now=at(9))) == []


def test_a_wait_job_survives_the_round_trip_through_a_start_request() -> None:
    definition = approval()
    assert parse_workflow(definition_mapping(definition)) == definition


def test_the_example_and_the_python_builder_define_the_same_workflow() -> None:
    from pathlib import Path

    from actors.definitions import load_workflow_file
    from sdk.builder import WaitFor as Wait
    from sdk.builder import Workflow

    example = load_workflow_file(Path(__file__).parents[2] / "examples" / "approval.yaml")
    wf = Workflow("approval")
    version = wf.input("version", default="1.0.0", description="the version to release")
    build = wf.job("build", run=f'echo "built {version}"')
    approve = wf.job(
        "approve", needs=[build], wait_for=Wait(signal="approve", timeout=timedelta(hours=24))
    )
    wf.job(
        "deploy",
        needs=[approve],
        run=f'echo "deploying {version}, approved by {approve.output("by")} '
        f'({approve.output("ticket")})"',
    )
    assert wf.build() == example
    assert example.jobs["approve"].wait_for == WaitFor(signal="approve", timeout=DAY)


def test_a_malformed_wait_for_is_refused_with_every_problem_located() -> None:
    from actors.definitions import load_workflow_text
    from events.errors import InvalidWorkflow

    text = """\
name: bad
jobs:
  a:
    wait_for: {signal: "no good", timeout: -3, colour: red}
    run: echo
  b:
    wait_for: approve
  c:
    wait_for: {timeout: 1h}
"""
    with pytest.raises(InvalidWorkflow) as caught:
        load_workflow_text(text, source="bad.yaml")
    problems = str(caught.value)
    for expected in [
        "bad.yaml:4 jobs.a.wait_for.colour: unknown field: expected one of signal, webhook, "
        "timeout",
        "jobs.a.wait_for.signal: signal name 'no good' is not a valid name",
        "jobs.a.wait_for.timeout: invalid duration -3",
        "bad.yaml:5 jobs.a.run: a job that waits (wait_for) runs on no worker: drop run",
        "bad.yaml:7 jobs.b.wait_for: expected a mapping such as {signal: approve, timeout: 24h}",
        "bad.yaml:9 jobs.c.wait_for: wait_for needs a signal",
    ]:
        assert expected in problems, problems
