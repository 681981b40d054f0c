"""Workflow variables (``actors.variables``, ``jetwork set``) as given / when / then: jobs not yet
queued read the values set, jobs queued already keep theirs; what is refused; ``vars:`` in
definitions and where ``vars.X`` is checked."""

from __future__ import annotations

from typing import Any

import pytest

from actors import workflow
from actors.commands import SetVariables
from actors.control import control_command
from actors.definitions import parse_workflow
from actors.definitions.mapping import definition_mapping
from events.catalog import JobQueued, JobSpec, WorkflowSucceeded, WorkflowVariablesSet
from events.errors import CommandRefused, InvalidWorkflow, WorkflowNotFound
from events.requests import REQUESTS, SetVarsRequest
from sdk.builder import Workflow
from tests.unit.given_when_then import T0, at
from tests.unit.test_control import advance, ok, queued, running
from tests.unit.test_workflow_actor import WF, WFA, started

DEFINITION = parse_workflow(
    {
        "name": "deploy",
        "vars": {"region": "eu", "batch": 10},
        "jobs": {
            "a": {"run": "./a ${{ vars.region }}"},
            "b": {"needs": ["a"], "run": "./b ${{ vars.region }} ${{ vars.batch }}"},
        },
    }
)


def set_vars(**values: Any) -> SetVariables:
    return SetVariables(workflow_id=WF, by="ops", now=at(5), values=values, reason="failover")


def set_event(**values: Any) -> WorkflowVariablesSet:
    return WorkflowVariablesSet(
        workflow_id=WF, by="ops", reason="failover", values=values, at=at(5)
    )


def test_a_run_starts_with_the_declared_variables_and_jobs_render_them() -> None:
    state = WFA.given(started(DEFINITION)).state
    assert state.vars == {"region": "eu", "batch": 10}
    decided = workflow.decide(state, advance())
    assert isinstance(decided[0], JobQueued)
    assert decided[0].spec.run == "./a eu"


def test_setting_variables_records_who_why_and_the_values_that_change() -> None:
    state = (
        WFA.given(started(DEFINITION), queued("a"))
        .when(set_vars(region="us", batch=10, new=True))
        .then(set_event(region="us", new=True))
    )
    assert state.vars == {"region": "us", "batch": 10, "new": True}


def test_a_job_not_yet_queued_reads_the_new_values_one_queued_already_keeps_its_own() -> None:
    state = WFA.given(
        started(DEFINITION), queued("a"), set_event(region="us", batch=500), running("a")
    ).state
    events = workflow.decide(workflow.evolve(state, ok("a")), advance())
    queued_b = [e for e in events if isinstance(e, JobQueued)]
    assert queued_b[0].spec.run == "./b us 500"
    assert state.jobs["a"].spec == JobSpec(run="./a")  # rendered before the set


def test_values_that_hold_already_change_nothing() -> None:
    WFA.given(started(DEFINITION)).when(set_vars(region="eu")).then_nothing()


def test_setting_on_an_ended_workflow_is_refused() -> None:
    ended = WorkflowSucceeded(workflow_id=WF, ended_at=at(3))
    WFA.given(started(DEFINITION), ended).when(set_vars(region="us")).then_raises(
        CommandRefused, "it has ended .succeeded.; variables reach only jobs not yet queued"
    )


def test_a_name_no_expression_can_read_is_refused_naming_it() -> None:
    WFA.given(started(DEFINITION)).when(set_vars(**{"my-region": "us"})).then_raises(
        CommandRefused, "'my-region' is not a variable name"
    )


def test_setting_nothing_is_refused() -> None:
    WFA.given(started(DEFINITION)).when(set_vars()).then_raises(CommandRefused, "no variable")


def test_setting_on_an_unknown_workflow_is_not_found() -> None:
    WFA.given().when(set_vars(region="us")).then_raises(WorkflowNotFound)


def test_a_redelivered_request_changes_nothing() -> None:
    event = WorkflowVariablesSet(
        workflow_id=WF, by="ops", values={"region": "us"}, request_id="r1", at=at(5)
    )
    command = SetVariables(
        workflow_id=WF, by="ops", now=at(6), values={"region": "ap"}, request_id="r1"
    )
    WFA.given(started(DEFINITION), event).when(command).then_nothing()


def test_the_plain_nats_request_decodes_to_the_command() -> None:
    raw = b'{"type": "set", "workflow_id": "wf-1", "by": "me", "values": {"n": [1, 2]}}'
    request = REQUESTS.validate_json(raw)
    assert isinstance(request, SetVarsRequest)
    assert request.subject().split(".")[2] == "set"
    command = control_command(request, T0)
    assert command == SetVariables(workflow_id="wf-1", by="me", now=T0, values={"n": [1, 2]})


# --- definitions ---


def test_a_declared_variables_block_checks_every_vars_reference() -> None:
    raw = {
        "name": "x",
        "vars": {"region": "eu"},
        "jobs": {"a": {"run": "./a ${{ vars.regoin }}"}},
    }
    with pytest.raises(InvalidWorkflow, match=r"vars.regoin: no such variable \(did you mean"):
        parse_workflow(raw)


def test_without_a_variables_block_any_vars_reference_is_allowed() -> None:
    raw = {"name": "x", "jobs": {"a": {"run": "./a ${{ vars.later }}", "if": "vars.go != 'no'"}}}
    definition = parse_workflow(raw)
    state = WFA.given(started(definition)).state
    assert workflow.decide(state, advance())[0].spec.run == "./a "  # type: ignore[attr-defined]


def test_bad_variable_names_are_located() -> None:
    with pytest.raises(InvalidWorkflow, match=r"vars.1st: '1st' is not a variable name"):
        parse_workflow({"name": "x", "vars": {"1st": 1}, "jobs": {"a": {"run": "./a"}}})
    with pytest.raises(InvalidWorkflow, match=r"vars: expected a mapping"):
        parse_workflow({"name": "x", "vars": [1], "jobs": {"a": {"run": "./a"}}})


def test_variables_survive_the_mapping_and_the_builder() -> None:
    assert parse_workflow(definition_mapping(DEFINITION)) == DEFINITION
    built = Workflow("deploy", vars={"region": "eu", "batch": 10})
    built.job("a", run="./a ${{ vars.region }}")
    assert built.build().vars == {"region": "eu", "batch": 10}
