"""A fan-out of a ``workflow:`` job: one child workflow per instance, decided by the owner of the
parent with no I/O. Given the parent's history, when these items arrive, then these events are
decided and these commands sent (``Reaction.outbox``)."""

from __future__ import annotations

from typing import Any

from actors._child_runs import child_id
from actors.definitions import parse_workflow
from actors.engine.reactions import Cancel, ChildEnded
from actors.fanout import CHILDREN_AT_ONCE
from events.catalog import (
    JobCancelRequested,
    JobFailed,
    JobFannedIn,
    JobQueued,
    JobStatus,
    SubWorkflowStarted,
    WorkflowStatus,
)
from events.definition import WorkflowDefinition
from events.requests import CancelRequest, ChildEndedRequest, StartRequest
from tests.unit.test_subworkflows import CHILD_RAW, PARENT, Owner, of_type, start


def fanned(items: list[Any], **sub: Any) -> WorkflowDefinition:
    return parse_workflow(
        {
            "name": "parent",
            "jobs": {
                "sub": {
                    "workflow": "./child.yaml",
                    "for_each": items,
                    "with": {"who": "${{ item }}"},
                    **sub,
                },
                "after": {"needs": ["sub"], "run": "echo ${{ needs.sub.outputs.greeting }}"},
            },
            "workflows": {"./child.yaml": CHILD_RAW},
        }
    )


def ended(index: int, status: str, attempt: int = 1, **fields: Any) -> ChildEnded:
    job = f"sub-{index}"
    return ChildEnded(
        ChildEndedRequest(
            workflow_id=PARENT,
            job=job,
            attempt=attempt,
            child_id=child_id(PARENT, job, attempt),
            status=status,  # type: ignore[arg-type]
            **fields,
        )
    )


def starts(reaction: Any) -> list[StartRequest]:
    return [r for r in reaction.outbox if isinstance(r, StartRequest)]


def test_each_instance_starts_a_child_of_its_own_with_its_item_as_inputs() -> None:
    owner = Owner()
    reaction = owner.when(start(fanned(["ann", "bo", "cy"], max_parallel=2)))
    started = of_type(reaction.decided, SubWorkflowStarted)
    assert [(s.job, s.child_id) for s in started] == [
        ("sub-0", child_id(PARENT, "sub-0", 1)),
        ("sub-1", child_id(PARENT, "sub-1", 1)),
    ]
    assert not of_type(reaction.decided, JobQueued)  # no worker runs any of it
    assert [(s.workflow_id, s.inputs) for s in starts(reaction)] == [
        (child_id(PARENT, "sub-0", 1), {"who": "ann"}),
        (child_id(PARENT, "sub-1", 1), {"who": "bo"}),
    ]
    assert [s.parent.job for s in starts(reaction) if s.parent] == ["sub-0", "sub-1"]


def test_a_child_ending_makes_room_and_the_outputs_are_gathered_in_item_order() -> None:
    owner = Owner()
    owner.when(start(fanned(["ann", "bo", "cy"], max_parallel=2)))
    reaction = owner.when(ended(1, "succeeded", outputs={"greeting": "hi bo"}))
    [third] = of_type(reaction.decided, SubWorkflowStarted)
    assert third.job == "sub-2"
    # Still running: sub-0 and sub-2, whose starts are sent (again) with every reaction.
    assert {s.workflow_id for s in starts(reaction)} == {
        child_id(PARENT, "sub-0", 1),
        child_id(PARENT, "sub-2", 1),
    }
    owner.when(ended(2, "succeeded", outputs={"greeting": "hi cy"}))
    reaction = owner.when(ended(0, "succeeded", outputs={"greeting": "hi ann"}))
    [fanned_in] = of_type(reaction.decided, JobFannedIn)
    assert fanned_in.succeeded
    assert fanned_in.outputs == {"greeting": '["hi ann","hi bo","hi cy"]'}
    assert owner.state.job("after").status is JobStatus.QUEUED
    assert reaction.outbox == []


def test_without_max_parallel_at_most_twenty_children_run_at_once() -> None:
    owner = Owner()
    reaction = owner.when(start(fanned([f"w{i}" for i in range(25)])))
    assert len(of_type(reaction.decided, SubWorkflowStarted)) == CHILDREN_AT_ONCE == 20
    assert len(starts(reaction)) == 20


def test_a_failed_child_stops_the_others_under_fail_fast_and_fails_the_job() -> None:
    owner = Owner()
    owner.when(start(fanned(["ann", "bo", "cy"])))
    reaction = owner.when(ended(0, "failed", reason="1 job(s) failed: greet"))
    asked = of_type(reaction.decided, JobCancelRequested)
    assert sorted(e.job for e in asked) == ["sub-1", "sub-2"]
    cancels = [r.workflow_id for r in reaction.outbox if isinstance(r, CancelRequest)]
    assert cancels == [child_id(PARENT, "sub-1", 1), child_id(PARENT, "sub-2", 1)]
    owner.when(ended(1, "cancelled"))
    reaction = owner.when(ended(2, "cancelled"))
    [fanned_in] = of_type(reaction.decided, JobFannedIn)
    assert not fanned_in.succeeded and fanned_in.error.startswith("1 of 3 instances failed: sub-0")
    assert owner.state.status is WorkflowStatus.FAILED


def test_a_retry_of_an_instance_starts_a_new_child_for_it() -> None:
    owner = Owner()
    owner.when(start(fanned(["ann"], retry=2)))
    reaction = owner.when(ended(0, "failed", reason="boom"))
    [again] = of_type(reaction.decided, SubWorkflowStarted)
    assert (again.job, again.attempt) == ("sub-0", 2)
    assert again.child_id == child_id(PARENT, "sub-0", 2)
    assert [s.workflow_id for s in starts(reaction)] == [again.child_id]


def test_cancelling_the_parent_cancels_every_running_child() -> None:
    owner = Owner()
    owner.when(start(fanned(["ann", "bo"])))
    reaction = owner.when(Cancel(CancelRequest(workflow_id=PARENT, reason="stop")))
    cancels = {r.workflow_id for r in reaction.outbox if isinstance(r, CancelRequest)}
    assert cancels == {child_id(PARENT, "sub-0", 1), child_id(PARENT, "sub-1", 1)}
    owner.when(ended(0, "cancelled"))
    owner.when(ended(1, "cancelled"))
    assert owner.state.status is WorkflowStatus.CANCELLED


def test_a_matrix_instance_whose_inputs_the_child_refuses_fails_before_its_child_starts() -> None:
    matrix = parse_workflow(
        {
            "name": "m",
            "jobs": {
                "sub": {
                    "workflow": "./child.yaml",
                    "strategy": {"matrix": {"who": ["ann"], "extra": ["x"]}},
                    "with": {"who": "${{ matrix.who }}", "extra": "${{ matrix.extra }}"},
                }
            },
            "workflows": {"./child.yaml": CHILD_RAW},
        }
    )
    reaction = Owner("wf-m").when(start(matrix, wf="wf-m"))
    [failed] = of_type(reaction.decided, JobFailed)
    assert failed.job == "sub-0" and "refuses its inputs" in failed.error
    assert "inputs.extra" in failed.error
    assert not of_type(reaction.decided, SubWorkflowStarted)


def test_a_looping_fan_out_of_sub_workflows_runs_a_new_child_per_iteration() -> None:
    owner = Owner()
    loop = {"until": "outputs.greeting == 'enough'", "max_iterations": 3}
    owner.when(start(fanned(["ann"], loop=loop, **{"with": {"who": "${{ loop.iteration }}"}})))
    reaction = owner.when(ended(0, "succeeded", outputs={"greeting": "more"}))
    [again] = of_type(reaction.decided, SubWorkflowStarted)
    assert (again.job, again.attempt) == ("sub-0", 2)
    assert [(s.workflow_id, s.inputs) for s in starts(reaction)] == [
        (child_id(PARENT, "sub-0", 2), {"who": "2"})
    ]
    reaction = owner.when(ended(0, "succeeded", attempt=2, outputs={"greeting": "enough"}))
    [fanned_in] = of_type(reaction.decided, JobFannedIn)
    assert fanned_in.succeeded and fanned_in.outputs == {"greeting": '["enough"]'}


def test_the_builder_fans_out_a_sub_workflow_as_the_yaml_does() -> None:
    from sdk.builder import ITEM, Workflow

    child = parse_workflow(CHILD_RAW)
    wf = Workflow("parent")
    wf.job("sub", workflow=child, for_each=["ann", "bo"], max_parallel=1, with_={"who": ITEM})
    built = wf.build()
    assert built.jobs["sub"].workflow == "child" and built.workflows["child"] == child
    owner = Owner()
    reaction = owner.when(start(built))
    assert [(s.workflow_id, s.inputs) for s in starts(reaction)] == [
        (child_id(PARENT, "sub-0", 1), {"who": "ann"})
    ]
