"""Sub-workflows as the owner of a parent (or a child) decides them (``reactions.react``), with
no I/O: given the workflow's history, when these items arrive, then these events are decided and
these commands sent (``Reaction.outbox``)."""

from __future__ import annotations

from typing import Any

import pytest

from actors import workflow
from actors._child_runs import child_id
from actors.definitions import parse_workflow
from actors.engine.reactions import Cancel, ChildEnded, Item, Reaction, Start, react
from actors.workflow import WorkflowState
from events.base import Event, RecordedEvent
from events.catalog import (
    JobCancelled,
    JobCancelRequested,
    JobFailed,
    JobRetryScheduled,
    JobStatus,
    JobSucceeded,
    ParentLink,
    SubWorkflowStarted,
    WorkflowCancelled,
    WorkflowStatus,
    WorkflowSucceeded,
)
from events.definition import WorkflowDefinition
from events.errors import InvalidWorkflow
from events.requests import CancelRequest, ChildEndedRequest, StartRequest, request_msg_id
from tests.unit.given_when_then import T0, at

PARENT = "wf-parent"
CHILD_RAW: dict[str, Any] = {
    "name": "child",
    "inputs": {"who": {"required": True}},
    "jobs": {"greet": {"run": "echo hi ${{ inputs.who }}"}},
    "outputs": {"greeting": "${{ needs.greet.outputs.greeting }}"},
}


def parent_definition(**sub: Any) -> WorkflowDefinition:
    return parse_workflow(
        {
            "name": "parent",
            "jobs": {
                "sub": {"workflow": "./child.yaml", "with": {"who": "ann"}, **sub},
                "after": {"needs": ["sub"], "run": "echo ${{ needs.sub.outputs.greeting }}"},
            },
            "outputs": {"greeting": "${{ needs.sub.outputs.greeting }}"},
            "workflows": {"./child.yaml": CHILD_RAW},
        }
    )


class Owner:
    """A workflow's log as its owning engine knows it, and the reactions to what arrives."""

    def __init__(self, workflow_id: str = PARENT) -> None:
        self.state = WorkflowState(workflow_id=workflow_id)
        self.log: list[RecordedEvent] = []

    def when(self, *items: Item, now: float = 0) -> Reaction:
        reaction = react(self.state, list(items), at(now))
        new = [
            RecordedEvent(len(self.log) + i, e.subject(), T0, e)  # type: ignore[attr-defined]
            for i, e in enumerate(reaction.decided, start=1)
        ]
        self.log += new
        self.state = workflow.replay(self.log)
        return reaction


def start(definition: WorkflowDefinition, wf: str = PARENT, **fields: Any) -> Start:
    from actors.definitions.mapping import definition_mapping

    request = StartRequest(workflow_id=wf, definition=definition_mapping(definition), **fields)
    return Start(request, definition)


def ended(status: str, attempt: int = 1, **fields: Any) -> ChildEnded:
    return ChildEnded(
        ChildEndedRequest(
            workflow_id=PARENT,
            job="sub",
            attempt=attempt,
            child_id=child_id(PARENT, "sub", attempt),
            status=status,  # type: ignore[arg-type]
            **fields,
        )
    )


def of_type(events: list[Event], kind: type[Event]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def test_a_ready_workflow_job_starts_its_child_with_a_derived_id_and_its_inputs() -> None:
    owner = Owner()
    reaction = owner.when(start(parent_definition()))
    [started] = of_type(reaction.decided, SubWorkflowStarted)
    assert started.child_id == child_id(PARENT, "sub", 1) == child_id(PARENT, "sub", 1)
    assert child_id(PARENT, "sub", 2) != started.child_id
    assert owner.state.job("sub").status is JobStatus.RUNNING
    [sent] = reaction.outbox
    assert isinstance(sent, StartRequest)
    assert sent.workflow_id == started.child_id
    assert sent.inputs == {"who": "ann"}
    assert sent.parent == ParentLink(workflow_id=PARENT, job="sub", attempt=1)
    assert parse_workflow(sent.definition).name == "child"
    assert request_msg_id(sent) == f"start.{started.child_id}"  # de-duplicated when sent again


def test_every_reaction_while_the_child_runs_sends_its_start_again() -> None:
    owner = Owner()
    owner.when(start(parent_definition()))
    # A redelivered trigger after an engine died between the append and the send.
    reaction = owner.when(RecordedEvent(1, owner.log[0].subject, T0, owner.log[0].event))
    assert reaction.decided == []
    assert [type(r) for r in reaction.outbox] == [StartRequest]


def test_the_childs_success_gives_the_job_its_outputs_and_the_parent_goes_on() -> None:
    owner = Owner()
    owner.when(start(parent_definition()))
    reaction = owner.when(ended("succeeded", outputs={"greeting": "hi ann"}), now=5)
    [succeeded] = of_type(reaction.decided, JobSucceeded)
    assert succeeded.outputs == {"greeting": "hi ann"}
    assert owner.state.job("after").status is JobStatus.QUEUED
    assert "hi ann" in (owner.state.job("after").spec.run or "")
    assert reaction.outbox == []  # the child has ended: nothing more to send it


def test_a_repeated_or_stale_end_notice_changes_nothing() -> None:
    owner = Owner()
    owner.when(start(parent_definition()))
    owner.when(ended("succeeded", outputs={"greeting": "x"}))
    assert owner.when(ended("succeeded", outputs={"greeting": "x"})).decided == []
    assert owner.when(ended("failed", attempt=7)).decided == []


def test_the_childs_failure_fails_the_job_and_the_workflow() -> None:
    owner = Owner()
    owner.when(start(parent_definition()))
    reaction = owner.when(ended("failed", reason="1 job(s) failed: greet"))
    [failed] = of_type(reaction.decided, JobFailed)
    assert (
        failed.error == f"sub-workflow {child_id(PARENT, 'sub', 1)} failed: 1 job(s) failed: greet"
    )
    assert owner.state.status is WorkflowStatus.FAILED


def test_the_retry_policy_starts_a_new_child_run_for_the_next_attempt() -> None:
    owner = Owner()
    owner.when(start(parent_definition(retry=2)))
    reaction = owner.when(ended("failed", reason="boom"))
    assert of_type(reaction.decided, JobRetryScheduled)
    [again] = of_type(reaction.decided, SubWorkflowStarted)
    assert again.attempt == 2 and again.child_id == child_id(PARENT, "sub", 2)
    [sent] = reaction.outbox
    assert isinstance(sent, StartRequest) and sent.workflow_id == again.child_id
    owner.when(ended("succeeded", attempt=2, outputs={"greeting": "second"}))
    assert owner.state.job("sub").outputs == {"greeting": "second"}


def test_cancelling_the_parent_cancels_the_child_and_its_end_confirms_the_job() -> None:
    owner = Owner()
    owner.when(start(parent_definition()))
    reaction = owner.when(Cancel(CancelRequest(workflow_id=PARENT, reason="stop")))
    assert of_type(reaction.decided, JobCancelRequested)
    cancel = [r for r in reaction.outbox if isinstance(r, CancelRequest)]
    assert [c.workflow_id for c in cancel] == [child_id(PARENT, "sub", 1)]
    reaction = owner.when(ended("cancelled", reason="its parent was cancelled"))
    assert of_type(reaction.decided, JobCancelled)
    assert of_type(reaction.decided, WorkflowCancelled)


def test_a_child_cancelled_on_its_own_fails_the_job() -> None:
    owner = Owner()
    owner.when(start(parent_definition()))
    owner.when(ended("cancelled", reason="cancelled by user"))
    assert owner.state.job("sub").status is JobStatus.FAILED


def test_inputs_the_child_refuses_fail_the_job_before_any_child_starts() -> None:
    definition = parent_definition(**{"with": {"nobody": "x"}})
    owner = Owner()
    reaction = owner.when(start(definition))
    [failed] = of_type(reaction.decided, JobFailed)
    assert "refuses its inputs" in failed.error and "inputs.nobody" in failed.error
    assert reaction.outbox == []


def test_a_child_sends_its_end_with_its_outputs_to_its_parent_every_time() -> None:
    child = Owner("sub-x")
    definition = parse_workflow(CHILD_RAW)
    link = ParentLink(workflow_id=PARENT, job="sub", attempt=1)
    reaction = child.when(start(definition, wf="sub-x", inputs={"who": "ann"}, parent=link))
    assert reaction.outbox == []  # running: nothing to tell yet
    assert child.state.parent == link
    queued = child.log[-1].event
    done = JobSucceeded(
        workflow_id="sub-x",
        job="greet",
        attempt=1,
        epoch=1,
        outputs={"greeting": "hi"},
        ended_at=at(1),
    )
    del queued
    child.log.append(RecordedEvent(len(child.log) + 1, done.subject(), T0, done))
    reaction = child.when(child.log[-1])
    assert of_type(reaction.decided, WorkflowSucceeded)[0].outputs == {"greeting": "hi"}
    [notice] = reaction.outbox
    assert isinstance(notice, ChildEndedRequest)
    assert (notice.workflow_id, notice.job, notice.attempt, notice.status) == (
        PARENT,
        "sub",
        1,
        "succeeded",
    )
    assert notice.outputs == {"greeting": "hi"}
    assert request_msg_id(notice) == "child_ended.sub-x"
    # Redelivered after a crash between the append and the send: sent again.
    assert child.when(child.log[-1]).outbox == [notice]


# --- validation --------------------------------------------------------------------------------


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow(raw)
    return caught.value.problems


def test_a_workflow_job_whose_child_is_not_embedded_is_refused_with_its_location() -> None:
    found = problems({"name": "p", "jobs": {"sub": {"workflow": "./c.yaml"}}})
    assert found == [
        "jobs.sub.workflow: './c.yaml' is not embedded: start the workflow from its file "
        "(jetwork run, Client.start), which reads the sub-workflow's file, or embed it in "
        "workflows:"
    ]


def test_worker_fields_on_a_workflow_job_are_refused() -> None:
    found = problems(
        {
            "name": "p",
            "jobs": {"sub": {"workflow": "./c.yaml", "run": "x", "labels": ["gpu"]}},
            "workflows": {"./c.yaml": CHILD_RAW},
        }
    )
    assert "jobs.sub.run: a workflow job runs a sub-workflow: run does not apply" in found
    assert "jobs.sub.labels: a workflow job runs a sub-workflow: labels does not apply" in found


def test_an_embedded_childs_problems_are_located_under_workflows() -> None:
    found = problems(
        {
            "name": "p",
            "jobs": {"sub": {"workflow": "c"}},
            "workflows": {"c": {"name": "c", "jobs": {"x": {"run": "a", "needs": ["y"]}}}},
        }
    )
    assert found == ["workflows.c: jobs.x.needs[0]: unknown job 'y'"]


def test_nesting_deeper_than_five_is_refused() -> None:
    raw: dict[str, Any] = {"name": "leaf", "jobs": {"a": {"run": "true"}}}
    for level in range(6):
        raw = {"name": f"l{level}", "jobs": {"s": {"workflow": "c"}}, "workflows": {"c": raw}}
    found = problems(raw)
    assert len(found) == 1 and "nest" in found[0] and "at most" in found[0]


def test_outputs_naming_an_unknown_job_are_refused() -> None:
    found = problems(
        {"name": "p", "jobs": {"a": {"run": "true"}}, "outputs": {"x": "${{ needs.b.outputs.y }}"}}
    )
    assert found == ["outputs.x: needs.b: no such job"]
