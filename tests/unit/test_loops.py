"""Loops as the owner of a workflow decides them (``reactions.react``), with no I/O: given a
loop job's iterations so far, when one ends, then it runs again, ends, or fails."""

from __future__ import annotations

from typing import Any

import pytest

from actors import job
from actors._child_runs import child_id
from actors.commands import ClaimJob, FailJob, RequeueJob
from actors.definitions import parse_workflow
from actors.engine.reactions import Fired
from actors.engine.timers import RetryTimer
from events.base import RecordedEvent
from events.catalog import (
    JobFailed,
    JobLooped,
    JobQueued,
    JobRetryScheduled,
    JobStatus,
    JobSucceeded,
    SubWorkflowStarted,
    WorkflowStatus,
)
from events.definition import WorkflowDefinition
from events.errors import InvalidWorkflow
from tests.unit.given_when_then import T0, at
from tests.unit.test_subworkflows import CHILD_RAW, PARENT, Owner, ended, of_type, start


def looping(max_iterations: int = 3, **job: Any) -> WorkflowDefinition:
    return parse_workflow(
        {
            "name": "loop",
            "jobs": {
                "poll": {
                    "run": "echo ${{ loop.iteration }}",
                    "loop": {"until": "outputs.done == 'true'", "max_iterations": max_iterations},
                    **job,
                },
                "after": {"needs": ["poll"], "run": "echo ${{ needs.poll.outputs.n }}"},
            },
            "outputs": {"n": "${{ needs.poll.outputs.n }}"},
        }
    )


def finish(owner: Owner, done: str, n: str, now: float = 1) -> list[Any]:
    """The worker's success of the current attempt, as it lands in the log."""
    current = owner.state.job("poll")
    event = JobSucceeded(
        workflow_id=PARENT,
        job="poll",
        attempt=current.attempt,
        epoch=current.epoch + 1,
        outputs={"done": done, "n": n},
        ended_at=at(now),
    )
    owner.log.append(RecordedEvent(len(owner.log) + 1, event.subject(), T0, event))
    return owner.when(owner.log[-1], now=now).decided


def test_iterations_run_until_the_condition_over_the_latest_outputs_holds() -> None:
    owner = Owner()
    decided = owner.when(start(looping())).decided
    [first] = of_type(decided, JobQueued)
    assert first.spec.run == "echo 1" and first.attempt == 1
    decided = finish(owner, "false", "1")
    [looped] = of_type(decided, JobLooped)
    assert (looped.iteration, looped.attempt_base) == (2, 1)
    [second] = of_type(decided, JobQueued)
    assert second.spec.run == "echo 2"
    assert second.attempt == 2 and second.attempt_base == 1  # attempts go on counting
    assert owner.state.job("after").status is JobStatus.PENDING  # never judged on iteration 1
    decided = finish(owner, "true", "2")
    assert not of_type(decided, JobLooped)
    assert owner.state.job("poll").iteration == 2
    [after] = [e for e in of_type(decided, JobQueued) if e.job == "after"]
    assert after.spec.run == "echo 2"


def test_reaching_max_iterations_fails_the_job_with_a_clear_message() -> None:
    owner = Owner()
    owner.when(start(looping(max_iterations=2)))
    finish(owner, "false", "1")
    decided = finish(owner, "false", "2")
    [failed] = of_type(decided, JobFailed)
    assert failed.error == (
        "loop reached max_iterations (2) and until never held: outputs.done == 'true'"
    )
    assert owner.state.status is WorkflowStatus.FAILED


def test_each_iteration_has_its_own_retry_budget() -> None:
    owner = Owner()
    owner.when(start(looping(retry=2)))
    decided = finish(owner, "false", "1")
    [queued] = of_type(decided, JobQueued)  # iteration 2, as a worker receives it
    assert (queued.attempt, queued.attempt_base) == (2, 1)
    state = job.evolve(job.pending(PARENT, "poll"), queued)
    claim = ClaimJob(
        workflow_id=PARENT, job="poll", attempt=2, worker_id="w", lease_ttl=30, now=at(2)
    )
    state = job.evolve(state, job.decide(state, claim)[0])
    fail = FailJob(workflow_id=PARENT, job="poll", epoch=state.epoch, error="x", now=at(3))
    # Attempt 2 is the first of iteration 2: with retry 2 it is retried (attempt 3)...
    first = job.decide(state, fail)
    assert [type(e) for e in first] == [JobFailed, JobRetryScheduled]
    for event in first:
        state = job.evolve(state, event)
    state = job.evolve(state, job.decide(state, RequeueJob(**state.ids, now=at(4)))[0])
    claim = claim.model_copy(update={"attempt": 3})
    state = job.evolve(state, job.decide(state, claim)[0])
    # ... and attempt 3, its second, is its last.
    fail = fail.model_copy(update={"epoch": state.epoch})
    assert [type(e) for e in job.decide(state, fail)] == [JobFailed]


def test_a_workflow_job_loops_a_whole_child_run_per_iteration() -> None:
    owner = Owner()
    definition = parse_workflow(
        {
            "name": "p",
            "jobs": {
                "sub": {
                    "workflow": "c",
                    "with": {"who": "${{ loop.iteration }}"},
                    "loop": {"until": "outputs.greeting == 'hi 2'", "max_iterations": 5},
                }
            },
            "workflows": {"c": CHILD_RAW},
        }
    )
    reaction = owner.when(start(definition))
    [first] = of_type(reaction.decided, SubWorkflowStarted)
    assert first.spec.with_ == {"who": "1"}
    reaction = owner.when(ended("succeeded", outputs={"greeting": "hi 1"}))
    [second] = of_type(reaction.decided, SubWorkflowStarted)
    assert second.child_id == child_id(PARENT, "sub", 2) and second.spec.with_ == {"who": "2"}
    owner.when(ended("succeeded", attempt=2, outputs={"greeting": "hi 2"}))
    assert owner.state.status is WorkflowStatus.SUCCEEDED


def test_a_retry_timer_of_an_earlier_iteration_is_stale() -> None:
    owner = Owner()
    owner.when(start(looping()))
    finish(owner, "false", "1")
    timer = RetryTimer(workflow_id=PARENT, job="poll", attempt=1, due=at(0))
    assert owner.when(Fired(timer)).decided == []


@pytest.mark.parametrize(
    ("loop", "expected"),
    [
        (
            {"until": "outputs.done"},
            "jobs.poll.loop: missing max_iterations: a loop needs a bound, e.g. max_iterations: 20",
        ),
        (
            {"until": "outputs.done", "max_iterations": 0},
            "jobs.poll.loop.max_iterations: must be a whole number >= 1, got 0",
        ),
        (
            {"max_iterations": 3},
            "jobs.poll.loop: missing until: the condition that ends the loop, e.g. "
            "outputs.done == 'true'",
        ),
    ],
)
def test_a_malformed_loop_is_refused_with_its_location(loop: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow({"name": "l", "jobs": {"poll": {"run": "x", "loop": loop}}})
    assert caught.value.problems == [expected]


def test_loop_iteration_outside_a_loop_and_outputs_outside_until_are_refused() -> None:
    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow(
            {
                "name": "l",
                "jobs": {
                    "a": {"run": "echo ${{ loop.iteration }}"},
                    "b": {"run": "echo ${{ outputs.x }}"},
                },
            }
        )
    assert caught.value.problems == [
        "jobs.a.run: loop.iteration is only set in a job with loop:",
        "jobs.b.run: outputs.<key> is only readable in loop.until",
    ]
