"""A fan-out of a ``loop:`` job: each instance loops on its own, decided by the owner with no
I/O. Given the instances' iterations so far, when one ends, then it runs again (alone: the
others go on), ends, or fails; the job fans in once every instance's loop has ended."""

from __future__ import annotations

from typing import Any

from actors.definitions import parse_workflow
from actors.engine.reactions import Cancel
from actors.loops import LOOPED_INSTANCES
from events.base import RecordedEvent
from events.catalog import (
    JobCancelled,
    JobFailed,
    JobFannedIn,
    JobLooped,
    JobQueued,
    JobStatus,
    JobSucceeded,
    WorkflowStatus,
)
from events.definition import WorkflowDefinition
from events.requests import CancelRequest
from tests.unit.given_when_then import T0, at
from tests.unit.test_subworkflows import PARENT, Owner, of_type, start


def polls(items: list[Any], max_iterations: int = 3, **job: Any) -> WorkflowDefinition:
    return parse_workflow(
        {
            "name": "polls",
            "jobs": {
                "poll": {
                    "for_each": items,
                    "run": "poll ${{ item }} ${{ loop.iteration }}",
                    "loop": {
                        "until": "outputs.state == format('done-{0}', item)",
                        "max_iterations": max_iterations,
                    },
                    **job,
                },
                "after": {"needs": ["poll"], "run": "echo ${{ needs.poll.outputs.state }}"},
            },
        }
    )


def finish(owner: Owner, job: str, state: str, now: float = 1) -> list[Any]:
    """The worker's success of ``job``'s current attempt, as it lands in the log."""
    current = owner.state.job(job)
    event = JobSucceeded(
        workflow_id=PARENT,
        job=job,
        attempt=current.attempt,
        epoch=current.epoch + 1,
        outputs={"state": state},
        ended_at=at(now),
    )
    owner.log.append(RecordedEvent(len(owner.log) + 1, event.subject(), T0, event))
    return owner.when(owner.log[-1], now=now).decided


def test_each_instance_loops_on_its_own_until_its_condition_over_its_item_holds() -> None:
    owner = Owner()
    decided = owner.when(start(polls(["a", "b"]))).decided
    assert [q.spec.run for q in of_type(decided, JobQueued)] == ["poll a 1", "poll b 1"]
    decided = finish(owner, "poll-0", "waiting")
    [looped] = of_type(decided, JobLooped)
    assert (looped.job, looped.iteration, looped.attempt_base) == ("poll-0", 2, 1)
    [again] = of_type(decided, JobQueued)
    assert (again.job, again.spec.run, again.attempt, again.attempt_base) == (
        "poll-0",
        "poll a 2",
        2,
        1,
    )
    decided = finish(owner, "poll-1", "done-b", now=2)  # b is done at its first iteration
    assert not of_type(decided, JobLooped) and not of_type(decided, JobFannedIn)
    assert owner.state.job("poll-1").status is JobStatus.SUCCEEDED
    decided = finish(owner, "poll-0", "done-a", now=3)
    [fanned_in] = of_type(decided, JobFannedIn)
    assert fanned_in.succeeded and fanned_in.outputs == {"state": '["done-a","done-b"]'}
    [after] = [e for e in of_type(decided, JobQueued) if e.job == "after"]
    assert after.spec.run == 'echo ["done-a","done-b"]'


def test_an_instance_reaching_max_iterations_fails_and_fail_fast_stops_the_others() -> None:
    owner = Owner()
    owner.when(start(polls(["a", "b"], max_iterations=2)))
    finish(owner, "poll-1", "waiting")  # b loops: pending, then queued for its iteration 2
    finish(owner, "poll-0", "waiting", now=2)
    decided = finish(owner, "poll-0", "still", now=3)
    [failed] = of_type(decided, JobFailed)
    assert failed.job == "poll-0"
    assert failed.error == (
        "loop reached max_iterations (2) and until never held: "
        "outputs.state == format('done-{0}', item)"
    )
    assert [e.job for e in of_type(decided, JobCancelled)] == ["poll-1"]
    [fanned_in] = of_type(decided, JobFannedIn)
    assert not fanned_in.succeeded and fanned_in.error == "1 of 2 instances failed: poll-0"
    assert owner.state.status is WorkflowStatus.FAILED


def test_max_parallel_counts_the_instances_running_an_iteration() -> None:
    owner = Owner()
    decided = owner.when(start(polls(["a", "b", "c"], max_parallel=1))).decided
    assert [q.job for q in of_type(decided, JobQueued)] == ["poll-0"]
    decided = finish(owner, "poll-0", "waiting")
    assert [q.job for q in of_type(decided, JobQueued)] == ["poll-0"]  # its next iteration first
    decided = finish(owner, "poll-0", "done-a", now=2)
    assert [q.job for q in of_type(decided, JobQueued)] == ["poll-1"]


def test_cancelling_withdraws_an_instance_queued_for_its_next_iteration() -> None:
    owner = Owner()
    owner.when(start(polls(["a"])))
    finish(owner, "poll-0", "waiting")
    assert owner.state.job("poll-0").status is JobStatus.QUEUED
    owner.when(Cancel(CancelRequest(workflow_id=PARENT, reason="stop")), now=2)
    assert owner.state.status is WorkflowStatus.CANCELLED
    assert owner.state.job("poll-0").status is JobStatus.CANCELLED


def test_a_loop_fan_out_over_too_many_items_fails_saying_so() -> None:
    owner = Owner()
    decided = owner.when(start(polls(list(range(LOOPED_INSTANCES + 1))))).decided
    [failed] = of_type(decided, JobFailed)
    assert failed.error == (
        "jobs.poll.for_each: 1001 items; a fan-out with loop: runs at most 1000 instances"
    )


def test_status_shows_each_instances_iteration() -> None:
    from projections.views import workflow_view

    owner = Owner()
    owner.when(start(polls(["a", "b"])))
    finish(owner, "poll-1", "waiting")
    view = workflow_view(owner.state)
    assert (view.jobs["poll-0"].iteration, view.jobs["poll-1"].iteration) == (1, 2)
    assert view.jobs["poll"].iteration is None  # the instances loop, not the job


def test_the_python_builder_defines_a_fan_out_of_loops() -> None:
    from sdk.builder import ITEM, Loop, Workflow

    wf = Workflow("polls")
    poll = wf.job(
        "poll",
        for_each=["a", "b"],
        run=f"poll {ITEM} {Loop.ITERATION}",
        loop=Loop(until="outputs.state == format('done-{0}', item)", max_iterations=3),
    )
    wf.job("after", needs=[poll], run=f"echo {poll.output('state')}")
    assert wf.build() == polls(["a", "b"])
