"""An operator's restart of an ended workflow (``actors.control`` and ``reactions.react``), as
given / when / then: the old run records its new run, the engine starts that run with the same
definition and inputs, naming the old one; what is refused."""

from __future__ import annotations

from typing import Any

from actors import workflow
from actors.commands import RestartWorkflow, StartWorkflow
from actors.definitions import parse_workflow
from actors.engine.reactions import Control, react
from events import subjects
from events.catalog import (
    WorkflowFailed,
    WorkflowRestarted,
    WorkflowStarted,
    WorkflowStatus,
    WorkflowSucceeded,
)
from events.errors import CommandRefused, WorkflowNotFound
from events.requests import RestartRequest
from tests.unit.given_when_then import T0, at
from tests.unit.test_control import failed, ok, pause, queued, running
from tests.unit.test_reactions import History
from tests.unit.test_workflow_actor import WF, WFA, dag, started

DEFINITION = dag(
    a={"run": "echo ${{ inputs.who }}", "retry": {"max_attempts": 3}},
    b={"needs": ("a",), "if": "always()"},
    inputs={"who": {"default": "world"}},
)


def restart(**kw: Any) -> RestartWorkflow:
    return RestartWorkflow(workflow_id=WF, by="ops", now=at(20), restarted_as="wf-2", **kw)


def _failed() -> list[Any]:
    return [
        started(DEFINITION, who="moon"),
        queued("a"),
        running("a"),
        failed("a"),
        WorkflowFailed(workflow_id=WF, reason="1 job(s) failed: a", ended_at=at(3)),
    ]


def test_restarting_an_ended_workflow_records_its_new_run_and_keeps_its_end() -> None:
    state = (
        WFA.given(*_failed())
        .when(restart(reason="again", request_id="r3"))
        .then(
            WorkflowRestarted(
                workflow_id=WF,
                by="ops",
                reason="again",
                request_id="r3",
                restarted_as="wf-2",
                at=at(20),
            )
        )
    )
    assert (state.status, state.restarted_as) == (WorkflowStatus.FAILED, "wf-2")
    assert workflow.decide(state, restart(request_id="r3")) == []  # a redelivery


def test_a_succeeded_workflow_can_be_restarted_too() -> None:
    history = [
        started(dag(a={})),
        queued("a"),
        ok("a"),
        WorkflowSucceeded(workflow_id=WF, ended_at=at(3)),
    ]
    [event] = WFA.given(*history).when(restart()).events()
    assert isinstance(event, WorkflowRestarted) and event.restarted_as == "wf-2"


def test_restarting_a_running_or_paused_workflow_is_refused() -> None:
    WFA.given(started(DEFINITION), queued("a")).when(restart()).then_raises(
        CommandRefused,
        "cannot restart workflow 'wf-1': it is running; only an ended workflow can be restarted",
    )
    paused = WFA.given(started(DEFINITION), queued("a")).when(pause()).events()
    WFA.given(started(DEFINITION), queued("a"), *paused).when(restart()).then_raises(
        CommandRefused, "it is paused; only an ended workflow can be restarted"
    )


def test_restarting_a_workflow_never_started_is_refused() -> None:
    WFA.given().when(restart()).then_raises(WorkflowNotFound)


def test_the_engine_starts_the_new_run_with_the_same_definition_and_inputs() -> None:
    history = History(*_failed())
    request = RestartRequest(workflow_id=WF, by="ops", restarted_as="wf-2", request_id="r3")
    reaction = react(history.state, [Control(request)], at(20))
    assert reaction.applied == {0: True}
    [start] = reaction.starts
    assert (start.workflow_id, start.restarted_from) == ("wf-2", WF)
    assert start.subject() == subjects.command("start", "wf-2")
    assert parse_workflow(start.definition) == DEFINITION
    assert start.inputs == {"who": "moon"}
    # The new run's start names the old run, and its state says so.
    command = StartWorkflow(
        workflow_id="wf-2",
        definition=parse_workflow(start.definition),
        inputs=start.inputs,
        restarted_from=start.restarted_from,
        now=T0,
    )
    [started_event] = workflow.decide(workflow.WorkflowState(workflow_id="wf-2"), command)
    assert isinstance(started_event, WorkflowStarted) and started_event.restarted_from == WF
    assert workflow.replay([started_event]).restarted_from == WF


def test_a_redelivered_restart_starts_its_run_again_and_a_refused_one_starts_none() -> None:
    # The first delivery's start may not have been sent (the engine stopped): a start is
    # idempotent, so a redelivery sends it again rather than lose it.
    history = History(*_failed())
    request = RestartRequest(workflow_id=WF, by="ops", restarted_as="wf-2", request_id="r3")
    first = react(history.state, [Control(request)], at(20))
    again = react(first.state, [Control(request)], at(21))
    assert again.applied == {0: False} and again.decided == []
    assert [start.workflow_id for start in again.starts] == ["wf-2"]
    running_now = History(started(DEFINITION), queued("a"))
    refused = react(running_now.state, [Control(request)], at(22))
    assert refused.starts == [] and 0 in refused.refused
