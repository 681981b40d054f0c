"""Long-running jobs (``actors.parking``): given / when / then on the job actor, and the
engine's reaction (a callback timer armed when parked, the attempt queued again when it fires)."""

from __future__ import annotations

from typing import Any

from actors.commands import CancelJob, ParkJob, UnparkJob
from actors.engine.reactions import Fired
from actors.engine.timers import CallbackTimer
from events.catalog import (
    JobCancelled,
    JobParked,
    JobQueued,
    JobResultRejected,
    JobStatus,
)
from tests.unit.given_when_then import at
from tests.unit.test_job_actor import JOB, SPEC, claim, complete, ids, queued, started, succeeded
from tests.unit.test_reactions import History, when
from tests.unit.test_reactions import queued as wf_queued
from tests.unit.test_workflow_actor import WF, dag, kinds
from tests.unit.test_workflow_actor import started as wf_started


def park(epoch: int = 1, t: float = 5, after: float = 30, **outputs: str) -> ParkJob:
    return ParkJob(**ids, epoch=epoch, worker_id="w1", callback_after=after, outputs=outputs,
                   now=at(t))  # fmt: skip


def parked(
    poll_count: int = 1, epoch: int = 1, t: float = 5, after: float = 30, **outputs: str
) -> JobParked:
    return JobParked(
        **ids,
        attempt=1,
        epoch=epoch,
        worker_id="w1",
        poll_count=poll_count,
        outputs=outputs,
        callback_after=after,
        not_before=at(t + after),
        at=at(t),
    )


def queued_again(poll_count: int, prior_epoch: int, t: float, **progress: str) -> JobQueued:
    return JobQueued(
        **ids,
        attempt=1,
        spec=SPEC,
        queued_at=at(t),
        prior_epoch=prior_epoch,
        poll_count=poll_count,
        progress=progress,
    )


def test_the_lease_holder_parks_the_job_which_then_holds_no_lease() -> None:
    state = JOB.given(queued(), started()).when(park(step="1")).then(parked(step="1"))
    assert state.status is JobStatus.PARKED
    assert state.worker_id is None
    assert state.outputs == {"step": "1"}


def test_the_callback_queues_the_same_attempt_with_its_progress() -> None:
    given = JOB.given(queued(), started(), parked(step="1"))
    command = UnparkJob(**ids, attempt=1, poll_count=1, now=at(35))
    state = given.when(command).then(queued_again(1, prior_epoch=1, t=35, step="1"))
    assert (state.status, state.attempt, state.poll_count) == (JobStatus.QUEUED, 1, 1)
    # The next claim takes the next epoch.
    state = JOB.given(queued(), started(), parked(step="1"), queued_again(1, 1, 35, step="1"))
    state = state.when(claim(t=36)).then(started(epoch=2, t=36))
    assert state.outputs == {"step": "1"}


def test_a_second_parking_counts_and_success_ends_it() -> None:
    given = JOB.given(
        queued(), started(), parked(step="1"), queued_again(1, 1, 35, step="1"), started(epoch=2)
    )
    given.when(park(epoch=2, t=40, step="2")).then(parked(2, epoch=2, t=40, step="2"))
    given.when(complete(epoch=2)).then(succeeded(epoch=2))


def test_a_stale_or_repeated_callback_changes_nothing() -> None:
    given = JOB.given(queued(), started(), parked(step="1"))
    given.when(UnparkJob(**ids, attempt=1, poll_count=2, now=at(35))).then_nothing()
    again = JOB.given(queued(), started(), parked(), queued_again(1, 1, 35))
    again.when(UnparkJob(**ids, attempt=1, poll_count=1, now=at(36))).then_nothing()


def test_a_park_from_a_stale_epoch_is_rejected_and_a_repeated_one_ignored() -> None:
    JOB.given(queued(), started(epoch=1), started(epoch=2, delivery=2)).when(park(epoch=1)).then(
        JobResultRejected(
            **ids,
            attempt=1,
            epoch=1,
            worker_id="w1",
            outcome="parked",
            reason="epoch 1 no longer holds the lease (epoch 2 does)",
            at=at(5),
        )
    )
    JOB.given(queued(), started(), parked()).when(park()).then_nothing()


def test_a_cancel_requested_while_running_turns_the_park_into_a_cancel() -> None:
    given = JOB.given(queued(), started())
    requested = given.when(CancelJob(**ids, reason="stop", now=at(3))).events()
    JOB.given(queued(), started(), *requested).when(park()).then(
        JobCancelled(**ids, reason="stop", worker_id="w1", at=at(5))
    )


def test_a_parked_job_is_withdrawn_by_a_cancel() -> None:
    JOB.given(queued(), started(), parked()).when(CancelJob(**ids, reason="stop", now=at(9))).then(
        JobCancelled(**ids, reason="stop", at=at(9))
    )


# --- the engine's reaction ---------------------------------------------------------------------


def wf_parked(**kw: Any) -> JobParked:
    return JobParked(workflow_id=WF, job="a", attempt=1, epoch=1, poll_count=1,
                     callback_after=30, not_before=at(31), at=at(1), **kw)  # fmt: skip


def test_parking_arms_the_callback_and_its_firing_queues_the_job_once() -> None:
    history = History(wf_started(dag(a={})), wf_queued("a"))
    before = history.state
    reaction = when(before, *history.add(wf_parked(outputs={"step": "1"})))
    assert reaction.decided == []
    timer = CallbackTimer(workflow_id=WF, job="a", attempt=1, poll_count=1, due=at(31))
    assert reaction.timers == [timer]
    assert reaction.state.job("a").status is JobStatus.PARKED
    # In process and from the stream: the second finds the attempt queued already.
    reaction = when(history.state, Fired(timer), Fired(timer, from_stream=True), now=31)
    assert kinds(reaction.decided) == [("JobQueued", "a")]
    requeued = reaction.decided[0]
    assert isinstance(requeued, JobQueued)
    assert (requeued.attempt, requeued.poll_count, requeued.progress) == (1, 1, {"step": "1"})
    assert requeued.prior_epoch == 1


def test_a_workflow_waits_for_its_parked_job() -> None:
    history = History(wf_started(dag(a={}, b={})), wf_queued("a"), wf_queued("b"))
    reaction = when(
        history.state,
        *history.add(wf_parked(), JobCancelled(workflow_id=WF, job="b", reason="x", at=at(2))),
    )
    assert ("WorkflowFailed", "wf") not in kinds(reaction.decided)
    assert ("WorkflowCancelled", "wf") not in kinds(reaction.decided)
    assert not any(k[0].startswith("Workflow") for k in kinds(reaction.decided))


def test_the_first_queueing_s_dispatch_timer_does_not_fail_the_attempt_queued_again() -> None:
    from actors.commands import TimeoutDispatch

    again = JOB.given(queued(), started(), parked(), queued_again(1, 1, 35))
    again.when(TimeoutDispatch(**ids, attempt=1, now=at(60))).then_nothing()
    failed = again.when(TimeoutDispatch(**ids, attempt=1, poll_count=1, now=at(60))).events()
    assert [e.event_type for e in failed] == ["JobFailed"]
