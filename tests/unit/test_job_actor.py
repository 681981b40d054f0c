"""The job actor: claims, leases and fencing, results, retries, cancellation, timeouts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import job
from actors.commands import (
    AnyJobCommand,
    CancelJob,
    ClaimJob,
    CompleteJob,
    ConfirmCancelled,
    ExpireLease,
    FailJob,
    RequeueJob,
    TimeoutJob,
)
from actors.job import ClaimRefused, JobState
from events.base import RecordedEvent
from events.catalog import (
    JobCancelled,
    JobCancelRequested,
    JobEvent,
    JobFailed,
    JobQueued,
    JobResultRejected,
    JobRetryScheduled,
    JobSkipped,
    JobSpec,
    JobStarted,
    JobStatus,
    JobSucceeded,
)
from events.definition import Backoff, OnFailure, RetryPolicy
from tests.unit.given_when_then import Actor, at

WF, NAME = "wf-1", "build"
SPEC = JobSpec(run="make", labels=("linux",), timeout=60.0)
JOB: Actor[JobState, AnyJobCommand, JobEvent] = Actor(
    initial=lambda: JobState(workflow_id=WF, job=NAME), evolve=job.evolve, decide=job.decide
)
ids: dict[str, Any] = {"workflow_id": WF, "job": NAME}


def queued(attempt: int = 1, t: float = 0, **kw: Any) -> JobQueued:
    return JobQueued(**ids, attempt=attempt, spec=SPEC, queued_at=at(t), **kw)


def claim(attempt: int = 1, worker: str = "w1", delivery: int = 1, t: float = 1) -> ClaimJob:
    return ClaimJob(
        **ids,
        attempt=attempt,
        worker_id=worker,
        delivery=delivery,
        dispatch_seq=7,
        lease_ttl=30,
        now=at(t),
    )


def started(
    attempt: int = 1, epoch: int = 1, worker: str = "w1", delivery: int = 1, t: float = 1
) -> JobStarted:
    return JobStarted(
        **ids,
        attempt=attempt,
        epoch=epoch,
        worker_id=worker,
        delivery=delivery,
        dispatch_seq=7,
        lease_ttl=30,
        started_at=at(t),
    )


def complete(epoch: int = 1, worker: str = "w1", t: float = 5) -> CompleteJob:
    return CompleteJob(**ids, epoch=epoch, worker_id=worker, outputs={"a": "1"}, now=at(t))


def succeeded(attempt: int = 1, epoch: int = 1, worker: str = "w1", t: float = 5) -> JobSucceeded:
    return JobSucceeded(
        **ids, attempt=attempt, epoch=epoch, worker_id=worker, outputs={"a": "1"}, ended_at=at(t)
    )


def fail(epoch: int = 1, t: float = 5, retryable: bool = True, worker: str = "w1") -> FailJob:
    return FailJob(
        **ids, epoch=epoch, worker_id=worker, error="boom", retryable=retryable, now=at(t)
    )


def failed(
    attempt: int = 1, epoch: int = 1, will_retry: bool = False, t: float = 5, retryable: bool = True
) -> JobFailed:
    return JobFailed(
        **ids,
        attempt=attempt,
        epoch=epoch,
        worker_id="w1",
        error="boom",
        retryable=retryable,
        will_retry=will_retry,
        ended_at=at(t),
    )


def rejected(
    epoch: int, outcome: str, reason: str, attempt: int = 1, t: float = 5, worker: str = "w1"
) -> JobResultRejected:
    return JobResultRejected(
        **ids,
        attempt=attempt,
        epoch=epoch,
        worker_id=worker,
        outcome=outcome,
        reason=reason,
        at=at(t),
    )


RETRY3 = RetryPolicy(max_attempts=3, backoff=Backoff.EXPONENTIAL, delay=1.0)


# --- claims and leases ----------------------------------------------------------------------


def test_claiming_a_queued_job_starts_it_with_the_first_epoch() -> None:
    state = JOB.given(queued()).when(claim()).then(started())
    assert state.status is JobStatus.RUNNING
    assert (state.epoch, state.worker_id) == (1, "w1")


def test_redelivery_after_lease_expiry_bumps_the_epoch() -> None:
    when = JOB.given(queued(), started()).when(claim(worker="w2", delivery=2, t=40))
    state = when.then(started(epoch=2, worker="w2", delivery=2, t=40))
    assert (state.epoch, state.worker_id, state.attempt) == (2, "w2", 1)


def test_a_duplicate_delivery_while_the_lease_is_held_is_dropped() -> None:
    error = JOB.given(queued(), started()).when(claim(worker="w2")).then_raises(ClaimRefused)
    assert not error.retryable
    assert "not newer" in str(error)


def test_a_second_dispatch_of_a_running_attempt_is_dropped() -> None:
    command = claim(worker="w2", delivery=2).model_copy(update={"dispatch_seq": 8})
    JOB.given(queued(), started()).when(command).then_raises(ClaimRefused, "already runs")


def test_a_claim_for_an_attempt_that_is_over_is_dropped() -> None:
    history = (queued(retry=RETRY3), started(), failed(will_retry=True), queued(attempt=2))
    error = JOB.given(*history).when(claim(attempt=1, delivery=2)).then_raises(ClaimRefused)
    assert not error.retryable
    assert "attempt 1 of build is over" in str(error)


def test_a_claim_on_a_finished_job_is_dropped() -> None:
    given = JOB.given(queued(), started(), succeeded())
    given.when(claim(delivery=2)).then_raises(ClaimRefused, "already succeeded")


@pytest.mark.parametrize("history", [(), (queued(),)], ids=["pending", "older-attempt-queued"])
def test_a_claim_ahead_of_the_log_is_refused_as_retryable(history: tuple[JobEvent, ...]) -> None:
    error = JOB.given(*history).when(claim(attempt=2)).then_raises(ClaimRefused)
    assert error.retryable


def test_a_redelivered_claim_after_a_cancel_request_cancels_the_job() -> None:
    asked = JobCancelRequested(**ids, reason="stop", requested_at=at(3))
    when = JOB.given(queued(), started(), asked).when(claim(worker="w2", delivery=2, t=40))
    state = when.then(JobCancelled(**ids, reason="stop", at=at(40)))
    assert state.status is JobStatus.CANCELLED


def expire(epoch: int, t: float = 70) -> ExpireLease:
    """The engine's decision when a lease the log keeps (the HTTP gateway's) ran out."""
    return ExpireLease(**ids, epoch=epoch, now=at(t))


def test_an_expired_lease_queues_the_attempt_again_for_the_next_epoch() -> None:
    state = JOB.given(queued(), started()).when(expire(1)).then(queued(t=70, prior_epoch=1))
    assert (state.status, state.attempt, state.epoch) == (JobStatus.QUEUED, 1, 1)
    # Another worker claims it from the new JobQueued alone: the next epoch.
    then = JOB.given(queued(), started(), queued(t=70, prior_epoch=1)).when(claim(worker="w2"))
    assert then.then(started(epoch=2, worker="w2")).epoch == 2


def test_the_old_holder_s_late_result_is_rejected_after_its_lease_expired() -> None:
    given = JOB.given(queued(), started(), queued(t=70, prior_epoch=1))
    [rejected] = given.when(complete()).events()
    assert isinstance(rejected, JobResultRejected)
    assert rejected.epoch == 1


def test_the_expiry_of_a_lease_that_ended_or_moved_on_decides_nothing() -> None:
    JOB.given(queued(), started(), started(epoch=2, worker="w2", delivery=2)).when(expire(1)).then()
    JOB.given(queued(), started(), succeeded()).when(expire(1)).then()


# --- results and fencing --------------------------------------------------------------------


def test_the_lease_holder_completes_the_job() -> None:
    state = JOB.given(queued(), started()).when(complete()).then(succeeded())
    assert state.status is JobStatus.SUCCEEDED
    assert state.outputs == {"a": "1"}


def test_a_stale_epoch_completion_is_rejected_and_recorded() -> None:
    history = (queued(), started(), started(epoch=2, worker="w2", delivery=2, t=40))
    when = JOB.given(*history).when(complete(epoch=1, t=50))
    reason = "epoch 1 no longer holds the lease (epoch 2 does)"
    state = when.then(rejected(1, "succeeded", reason, t=50))
    assert (state.status, state.rejections) == (JobStatus.RUNNING, 1)


def test_a_double_completion_is_rejected() -> None:
    history = (queued(), started(), started(epoch=2, worker="w2", delivery=2), succeeded(epoch=2))
    when = JOB.given(*history).when(complete(epoch=1, t=60))
    when.then(rejected(1, "succeeded", "the job is already succeeded", t=60))


def test_a_repeated_report_of_the_recorded_result_adds_nothing() -> None:
    # The worker's first append landed but its ack was lost; it reloads and reports again.
    JOB.given(queued(), started(), succeeded()).when(complete()).then_nothing()
    JOB.given(queued(), started(), failed()).when(fail()).then_nothing()


def test_a_stale_epoch_failure_is_rejected() -> None:
    history = (queued(), started(), started(epoch=2, worker="w2", delivery=2))
    reason = "epoch 1 no longer holds the lease (epoch 2 does)"
    JOB.given(*history).when(fail(epoch=1)).then(rejected(1, "failed", reason))


# --- failures and retries -------------------------------------------------------------------


def test_a_failure_without_retries_left_fails_the_job() -> None:
    state = JOB.given(queued(), started()).when(fail()).then(failed())
    assert state.status is JobStatus.FAILED
    assert state.error == "boom"


def test_a_retryable_failure_schedules_the_next_attempt_with_backoff() -> None:
    when = JOB.given(queued(retry=RETRY3), started()).when(fail(t=5))
    state = when.then(
        failed(will_retry=True, t=5),
        JobRetryScheduled(**ids, attempt=2, delay=1.0, not_before=at(6)),
    )
    assert state.status is JobStatus.RETRYING


def test_the_retry_timer_queues_the_next_attempt_with_the_same_spec() -> None:
    history = (queued(retry=RETRY3), started(), failed(will_retry=True))
    when = JOB.given(*history).when(RequeueJob(**ids, attempt=2, now=at(6)))
    # ``prior_epoch``: with it the event alone is the actor's state for the next claim.
    state = when.then(queued(attempt=2, t=6, retry=RETRY3, prior_epoch=1))
    assert (state.status, state.attempt) == (JobStatus.QUEUED, 2)


@pytest.mark.parametrize("attempt", [3, None])
def test_a_stale_or_duplicate_retry_timer_does_nothing(attempt: int | None) -> None:
    history = (queued(retry=RETRY3), started(), failed(will_retry=True), queued(attempt=2))
    JOB.given(*history).when(RequeueJob(**ids, attempt=attempt, now=at(9))).then_nothing()
    retrying = (queued(retry=RETRY3), started(), failed(will_retry=True))
    if attempt is not None:
        JOB.given(*retrying).when(RequeueJob(**ids, attempt=attempt, now=at(9))).then_nothing()


def run_until_settled(retry: RetryPolicy, on_failure: OnFailure, failures: int) -> list[JobEvent]:
    """Fail every attempt (up to ``failures``) through decide/evolve; return the whole log."""
    log: list[JobEvent] = [queued(retry=retry, on_failure=on_failure)]
    state = job.replay(log)
    t = 0.0
    for _ in range(failures):
        t += 1
        for command in (
            claim(attempt=state.attempt, t=t),
            fail(epoch=state.epoch + 1, t=t),
            RequeueJob(**ids, now=at(t)),
        ):
            new = job.decide(state, command)
            log += new
            state = job.replay(new, state)
        if state.status.is_terminal:
            break
    return log


def test_retries_exhaust_with_exponential_delays_capped_by_max_delay() -> None:
    policy = RetryPolicy(max_attempts=5, backoff=Backoff.EXPONENTIAL, delay=1, max_delay=3)
    log = run_until_settled(policy, OnFailure.FAIL_WORKFLOW, failures=10)
    delays = [e.delay for e in log if isinstance(e, JobRetryScheduled)]
    assert delays == [1, 2, 3, 3]
    fails = [e for e in log if isinstance(e, JobFailed)]
    assert [f.will_retry for f in fails] == [True, True, True, True, False]
    assert [e.attempt for e in log if isinstance(e, JobQueued)] == [1, 2, 3, 4, 5]
    assert job.replay(log).status is JobStatus.FAILED


def test_retry_delays_follow_the_policy_from_the_failure_time() -> None:
    policy = RetryPolicy(max_attempts=4, backoff=Backoff.EXPONENTIAL, delay=1)
    log = run_until_settled(policy, OnFailure.FAIL_WORKFLOW, failures=10)
    scheduled = [(e.delay, e.not_before) for e in log if isinstance(e, JobRetryScheduled)]
    assert scheduled == [(1, at(2)), (2, at(4)), (4, at(7))]


def test_a_permanent_failure_is_not_retried() -> None:
    when = JOB.given(queued(retry=RETRY3), started()).when(fail(retryable=False))
    state = when.then(failed(retryable=False))
    assert state.status is JobStatus.FAILED


def test_retry_forever_retries_past_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=2, backoff=Backoff.FIXED, delay=5)
    log = run_until_settled(policy, OnFailure.RETRY_FOREVER, failures=6)
    delays = [e.delay for e in log if isinstance(e, JobRetryScheduled)]
    assert delays == [5] * 6
    assert job.replay(log).status is JobStatus.QUEUED


def test_retry_forever_still_stops_on_a_permanent_failure() -> None:
    given = JOB.given(queued(on_failure=OnFailure.RETRY_FOREVER), started())
    given.when(fail(retryable=False)).then(failed(retryable=False))


def test_a_failure_after_a_cancel_request_is_not_retried() -> None:
    asked = JobCancelRequested(**ids, reason="stop", requested_at=at(3))
    JOB.given(queued(retry=RETRY3), started(), asked).when(fail()).then(failed())


# --- timeouts -------------------------------------------------------------------------------


def test_a_job_timeout_fails_the_running_attempt_and_retries_it() -> None:
    given = JOB.given(queued(retry=RETRY3), started())
    assert given.state.timeout_deadline() == at(61)
    when = given.when(TimeoutJob(**ids, epoch=1, now=at(61)))
    when.then(
        JobFailed(
            **ids,
            attempt=1,
            epoch=1,
            error="timed out after 1m",
            timed_out=True,
            will_retry=True,
            ended_at=at(61),
        ),
        JobRetryScheduled(**ids, attempt=2, delay=1.0, not_before=at(62)),
    )


def test_a_timeout_for_an_attempt_that_ended_does_nothing() -> None:
    given = JOB.given(queued(), started(), succeeded())
    assert given.state.timeout_deadline() is None
    given.when(TimeoutJob(**ids, epoch=1, now=at(61))).then_nothing()


# --- cancellation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "history",
    [(), (queued(),), (queued(retry=RETRY3), started(), failed(will_retry=True))],
    ids=["pending", "queued", "retrying"],
)
def test_cancelling_a_job_that_does_not_run_withdraws_it(history: tuple[JobEvent, ...]) -> None:
    when = JOB.given(*history).when(CancelJob(**ids, reason="stop", now=at(9)))
    state = when.then(JobCancelled(**ids, reason="stop", at=at(9)))
    assert state.status is JobStatus.CANCELLED


def test_cancelling_a_running_job_asks_its_worker_to_stop_once() -> None:
    given = JOB.given(queued(), started())
    cancel = CancelJob(**ids, reason="stop", now=at(9))
    state = given.when(cancel).then(JobCancelRequested(**ids, reason="stop", requested_at=at(9)))
    assert state.cancel_requested
    assert state.status is JobStatus.RUNNING
    JOB.given(queued(), started(), *given.when(cancel).events()).when(cancel).then_nothing()


def test_cancelling_a_finished_job_does_nothing() -> None:
    JOB.given(queued(), JobSkipped(**ids, reason="x", at=at(1))).when(
        CancelJob(**ids, now=at(9))
    ).then_nothing()


def test_the_holder_confirms_the_cancellation() -> None:
    asked = JobCancelRequested(**ids, reason="stop", requested_at=at(3))
    when = JOB.given(queued(), started(), asked).when(
        ConfirmCancelled(**ids, epoch=1, worker_id="w1", now=at(4))
    )
    when.then(JobCancelled(**ids, reason="stop", worker_id="w1", at=at(4)))


def test_a_stale_cancel_confirmation_is_rejected() -> None:
    history = (queued(), started(), started(epoch=2, worker="w2", delivery=2))
    when = JOB.given(*history).when(ConfirmCancelled(**ids, epoch=1, worker_id="w1", now=at(5)))
    reason = "epoch 1 no longer holds the lease (epoch 2 does)"
    when.then(rejected(1, "cancelled", reason))


# --- replay ---------------------------------------------------------------------------------


def test_replay_of_recorded_events_tracks_the_last_sequence() -> None:
    recorded = [
        RecordedEvent(seq=s, subject=e.subject(), time=at(s), event=e)
        for s, e in ((3, queued()), (9, started()))
    ]
    state = job.replay(recorded)
    assert (state.status, state.last_seq) == (JobStatus.RUNNING, 9)
    assert job.replay([succeeded()], state).last_seq == 9


def test_replay_needs_events_or_a_state() -> None:
    with pytest.raises(ValueError, match="initial state"):
        job.replay([])


# --- invariant: a job is completed at most once, epochs only grow ---------------------------

_workers = st.sampled_from(["w1", "w2"])
_commands = st.one_of(
    st.builds(
        lambda w, d, a: claim(attempt=a, worker=w, delivery=d),
        _workers,
        st.integers(1, 4),
        st.integers(1, 3),
    ),
    st.builds(lambda e: complete(epoch=e), st.integers(1, 4)),
    st.builds(lambda e, r: fail(epoch=e, retryable=r), st.integers(1, 4), st.booleans()),
    st.builds(lambda e: TimeoutJob(**ids, epoch=e, now=at(9)), st.integers(1, 4)),
    st.builds(lambda e: ConfirmCancelled(**ids, epoch=e, now=at(9)), st.integers(1, 4)),
    st.just(RequeueJob(**ids, now=at(9))),
    st.just(CancelJob(**ids, now=at(9))),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_commands, max_size=25))
def test_no_command_sequence_settles_a_job_twice(commands: list[AnyJobCommand]) -> None:
    log: list[JobEvent] = [queued(retry=RETRY3)]
    state = job.replay(log)
    for command in commands:
        try:
            new = job.decide(state, command)
        except ClaimRefused:
            continue
        log += new
        state = job.replay(new, state)
    finals: list[JobEvent] = [e for e in log if isinstance(e, JobSucceeded | JobCancelled)]
    finals += [e for e in log if isinstance(e, JobFailed) and not e.will_retry]
    assert len(finals) <= 1
    epochs = [e.epoch for e in log if isinstance(e, JobStarted)]
    assert epochs == list(range(1, len(epochs) + 1))
    if finals:
        assert log.index(finals[0]) == max(
            i for i, e in enumerate(log) if not isinstance(e, JobResultRejected)
        )
