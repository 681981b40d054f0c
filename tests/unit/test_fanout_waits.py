"""A fan-out of a ``wait_for`` job: each instance waits for a signal of its own, its name a
template over the item (``approve-${{ item }}``), decided with no I/O. Given the workflow's
history, when these signals, timers and cancels arrive, then these events are decided."""

from __future__ import annotations

from typing import Any

import pytest

from actors.definitions import parse_workflow
from actors.engine.reactions import Cancel, Control, Fired
from actors.engine.timers import WaitTimeoutTimer
from events.catalog import (
    JobCancelled,
    JobFailed,
    JobFannedIn,
    JobStatus,
    JobSucceeded,
    JobWaiting,
    SignalConsumed,
    SignalReceived,
    WorkflowStatus,
)
from events.definition import WorkflowDefinition
from events.errors import InvalidWorkflow
from events.requests import CancelRequest, HookRequest, SignalRequest
from tests.unit.given_when_then import at
from tests.unit.test_subworkflows import PARENT, Owner, of_type, start

HOUR = 3600.0


def regions(signal: str = "approve-${{ item }}", **job: Any) -> WorkflowDefinition:
    return parse_workflow(
        {
            "name": "rollout",
            "jobs": {
                "approve": {
                    "for_each": ["eu", "us"],
                    "wait_for": {"signal": signal, "timeout": "1h"},
                    **job,
                },
                "deploy": {"needs": ["approve"], "run": "echo ${{ needs.approve.outputs.by }}"},
            },
        }
    )


def signal(name: str, signal_id: str, **data: Any) -> Control:
    request = SignalRequest(
        workflow_id=PARENT, name=name, data=data or {"by": "ann"}, signal_id=signal_id, by="ann"
    )
    return Control(request)


def test_each_instance_waits_for_the_signal_its_item_names() -> None:
    owner = Owner()
    reaction = owner.when(start(regions()))
    waits = of_type(reaction.decided, JobWaiting)
    assert [(w.job, w.signal) for w in waits] == [
        ("approve-0", "approve-eu"),
        ("approve-1", "approve-us"),
    ]
    assert owner.state.job("approve-1").status is JobStatus.WAITING


def test_a_signal_succeeds_its_own_instance_and_the_last_one_fans_in() -> None:
    owner = Owner()
    owner.when(start(regions()))
    reaction = owner.when(signal("approve-us", "s1", by="bo"), now=1)
    [consumed] = of_type(reaction.decided, SignalConsumed)
    assert consumed.consumer == "approve-1"
    [succeeded] = of_type(reaction.decided, JobSucceeded)
    assert (succeeded.job, succeeded.outputs) == ("approve-1", {"by": "bo"})
    assert owner.state.job("approve-0").status is JobStatus.WAITING
    reaction = owner.when(signal("approve-eu", "s2", by="cy"), now=2)
    [fanned_in] = of_type(reaction.decided, JobFannedIn)
    assert fanned_in.succeeded and fanned_in.outputs == {"by": '["cy","bo"]'}
    assert owner.state.job("deploy").status is JobStatus.QUEUED


def test_a_signal_sent_before_the_fan_out_starts_is_kept_for_its_instance() -> None:
    definition = parse_workflow(
        {
            "name": "later",
            "jobs": {
                "first": {"wait_for": {"signal": "go"}},
                "approve": {
                    "needs": ["first"],
                    "for_each": ["eu"],
                    "wait_for": {"signal": "approve-${{ item }}"},
                },
            },
        }
    )
    owner = Owner()
    owner.when(start(definition))
    reaction = owner.when(signal("approve-eu", "early"), now=1)
    assert of_type(reaction.decided, SignalReceived) and not of_type(reaction.decided, JobWaiting)
    reaction = owner.when(signal("go", "go"), now=2)
    [waited] = [e for e in of_type(reaction.decided, JobWaiting) if e.job == "approve-0"]
    assert waited.signal == "approve-eu"
    assert [e.consumer for e in of_type(reaction.decided, SignalConsumed)] == [
        "first",
        "approve-0",
    ]
    assert owner.state.job("approve").status is JobStatus.SUCCEEDED
    assert owner.state.status is WorkflowStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("name", "accepted"),
    [("approve-eu", True), ("approve-anything", True), ("approve", False), ("deploy-eu", False)],
)
def test_a_signal_is_accepted_when_the_template_could_name_it(name: str, accepted: bool) -> None:
    owner = Owner()
    owner.when(start(regions()))
    reaction = owner.when(signal(name, "s1"), now=1)
    assert (0 not in reaction.refused) is accepted, reaction.refused
    if not accepted:
        assert "no job of it waits for signal" in reaction.refused[0]
        assert "approve-${{ item }}" in reaction.refused[0]


def test_one_name_for_every_instance_is_taken_by_one_instance_per_signal() -> None:
    owner = Owner()
    owner.when(start(regions(signal="approve")))
    reaction = owner.when(signal("approve", "s1"), now=1)
    assert [e.job for e in of_type(reaction.decided, JobSucceeded)] == ["approve-0"]
    reaction = owner.when(signal("approve", "s2"), now=2)
    assert [e.job for e in of_type(reaction.decided, JobSucceeded)] == ["approve-1"]


def test_an_instance_timing_out_fails_it_and_fail_fast_withdraws_the_other() -> None:
    owner = Owner()
    owner.when(start(regions()))
    timer = WaitTimeoutTimer(workflow_id=PARENT, job="approve-0", attempt=1, due=at(HOUR))
    reaction = owner.when(Fired(timer, from_stream=True), now=HOUR)
    [failed] = of_type(reaction.decided, JobFailed)
    assert failed.job == "approve-0" and failed.timed_out
    assert failed.error == "no signal 'approve-eu' arrived within 1h (wait_for timeout)"
    assert [e.job for e in of_type(reaction.decided, JobCancelled)] == ["approve-1"]
    [fanned_in] = of_type(reaction.decided, JobFannedIn)
    assert not fanned_in.succeeded and fanned_in.error == "1 of 2 instances failed: approve-0"
    assert owner.state.status is WorkflowStatus.FAILED


def test_cancelling_the_workflow_withdraws_every_waiting_instance() -> None:
    owner = Owner()
    owner.when(start(regions()))
    reaction = owner.when(Cancel(CancelRequest(workflow_id=PARENT, reason="stop")), now=1)
    assert {e.job for e in of_type(reaction.decided, JobCancelled)} >= {"approve-0", "approve-1"}
    assert owner.state.status is WorkflowStatus.CANCELLED


def test_a_name_that_renders_to_no_valid_name_fails_its_instance() -> None:
    definition = parse_workflow(
        {
            "name": "odd",
            "jobs": {
                "approve": {
                    "for_each": ["eu west"],
                    "on_failure": "continue",
                    "wait_for": {"signal": "approve-${{ item }}"},
                }
            },
        }
    )
    reaction = Owner().when(start(definition))
    [failed] = of_type(reaction.decided, JobFailed)
    assert failed.job == "approve-0"
    assert failed.error == (
        "cannot render the job: the signal name renders to 'approve-eu west': use 1-128 "
        "letters, digits, _ or -"
    )


def test_a_signal_template_reads_only_what_its_job_knows() -> None:
    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow({"name": "w", "jobs": {"a": {"wait_for": {"signal": "go-${{ item }}"}}}})
    assert caught.value.problems == [
        "jobs.a.wait_for.signal: item is only known in a job with strategy.matrix or for_each; "
        "'a' has none"
    ]
    # Outside a fan-out a template may still read the inputs.
    plain = parse_workflow(
        {
            "name": "w",
            "inputs": {"region": {"default": "eu"}},
            "jobs": {"a": {"wait_for": {"signal": "go-${{ inputs.region }}"}}},
        }
    )
    [waiting] = of_type(Owner().when(start(plain)).decided, JobWaiting)
    assert waiting.signal == "go-eu"


def test_a_fanned_out_webhook_wait_matches_each_instance_on_its_own_item() -> None:
    definition = parse_workflow(
        {
            "name": "paid",
            "jobs": {
                "pay": {
                    "for_each": ["o-1", "o-2"],
                    "wait_for": {"webhook": {"match": {"order": "${{ item }}"}}},
                }
            },
        }
    )
    owner = Owner()
    reaction = owner.when(start(definition))
    assert [(w.job, w.match) for w in of_type(reaction.decided, JobWaiting)] == [
        ("pay-0", {"order": "o-1"}),
        ("pay-1", {"order": "o-2"}),
    ]
    wrong = HookRequest(workflow_id=PARENT, job="pay-1", attempt=1, body={"order": "o-1"})
    reaction = owner.when(Control(wrong), now=1)
    assert 'order is "o-1", expected "o-2"' in reaction.refused[0]
    right = HookRequest(workflow_id=PARENT, job="pay-1", attempt=1, body={"order": "o-2"})
    reaction = owner.when(Control(right), now=2)
    [succeeded] = of_type(reaction.decided, JobSucceeded)
    assert (succeeded.job, succeeded.outputs) == ("pay-1", {"order": "o-2"})
    unknown = HookRequest(workflow_id=PARENT, job="pay-7", attempt=1, body={})
    assert "it has no job 'pay-7'" in owner.when(Control(unknown), now=3).refused[0]


def test_the_python_builder_defines_the_example() -> None:
    from pathlib import Path

    from actors.definitions import load_workflow_file
    from sdk.builder import ITEM, Input, WaitFor, Workflow

    wf = Workflow(
        "rollout",
        inputs={
            "regions": Input(default='["eu", "us", "ap"]', description="a JSON list of regions")
        },
        outputs={"by": "${{ needs.deploy.outputs.by }}"},
    )
    approve = wf.job(
        "approve",
        for_each="${{ fromJSON(inputs.regions) }}",
        wait_for=WaitFor(signal=f"approve-{ITEM}", timeout="1h"),
    )
    wf.job("deploy", needs=[approve], env={"BY": approve.output("by")},
           run='echo "::set-output by=$BY"')  # fmt: skip
    example = Path(__file__).parents[2] / "examples" / "rollout.yaml"
    assert wf.build() == load_workflow_file(example)
