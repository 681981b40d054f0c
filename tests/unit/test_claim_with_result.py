"""A short run's claim recorded inside its result (``WorkerConfig.claim_window``).

The result that carries its claim (``JobSucceeded.claimed``) must read exactly as the
``JobStarted`` it stands for followed by the plain result: for the job actor's fold (engine,
projector, worker), for readers that count claims, and for the chaos checker.
"""

from __future__ import annotations

from typing import Any

import pytest

from actors import job
from actors.commands import CompleteJob, FailJob
from actors.job import JobState, carry_claim
from events.catalog import (
    Claim,
    JobEvent,
    JobFailed,
    JobParked,
    JobQueued,
    JobRetryScheduled,
    JobSpec,
    JobStarted,
    JobSucceeded,
    implied_start,
    with_implied_starts,
)
from events.codec import decode, encode
from events.definition import RetryPolicy
from sdk.worker.claims import Dispatch, claim_locally
from sdk.worker.config import InvalidWorkerConfig, WorkerConfig
from tests.invariants import check_history
from tests.unit.given_when_then import at
from tests.unit.simulation import Simulation
from tests.unit.test_invariants import _definition, _renumber

WF, NAME = "wf-short", "build"
ids: dict[str, Any] = {"workflow_id": WF, "job": NAME}


def queued(prior_epoch: int = 0, retry: RetryPolicy | None = None) -> JobQueued:
    return JobQueued(
        **ids,
        attempt=1,
        spec=JobSpec(run="true"),
        retry=retry or RetryPolicy(),
        queued_at=at(0),
        prior_epoch=prior_epoch,
    )


def started(epoch: int = 1, worker: str = "w1") -> JobStarted:
    return JobStarted(
        **ids,
        attempt=1,
        epoch=epoch,
        worker_id=worker,
        delivery=1,
        dispatch_seq=7,
        lease_ttl=30,
        started_at=at(1),
    )


def after(events: list[JobEvent]) -> JobState:
    return job.replay(events)


def test_a_success_that_carries_its_claim_folds_as_the_claim_then_the_success() -> None:
    claim = started()
    results = job.decide(after([queued(), claim]), complete())
    carried = carry_claim(claim, results)
    assert carried is not None
    (success,) = carried
    assert isinstance(success, JobSucceeded)
    assert success.claimed == Claim(delivery=1, dispatch_seq=7, lease_ttl=30, started_at=at(1))
    assert after([queued(), success]) == after([queued(), claim, *results])
    state = after([queued(), success])
    assert (state.worker_id, state.started_at, state.epoch) == ("w1", at(1), 1)


def test_a_failure_with_its_retry_carries_the_claim_on_the_failure() -> None:
    claim = started()
    state = after([queued(retry=RetryPolicy(max_attempts=2)), claim])
    fail = FailJob(**ids, epoch=1, worker_id="w1", error="boom", retryable=True, now=at(2))
    results = job.decide(state, fail)
    carried = carry_claim(claim, results)
    assert carried is not None
    assert [type(e) for e in carried] == [JobFailed, JobRetryScheduled]
    assert isinstance(carried[0], JobFailed) and carried[0].claimed is not None
    before = [queued(retry=RetryPolicy(max_attempts=2))]
    assert after([*before, *carried]) == after([*before, claim, *results])


def complete(epoch: int = 1, worker: str = "w1") -> CompleteJob:
    return CompleteJob(**ids, epoch=epoch, worker_id=worker, outputs={"a": "1"}, now=at(2))


def test_only_a_result_of_the_claim_itself_can_carry_it() -> None:
    claim = started(epoch=2)
    other_epoch = job.decide(after([queued(prior_epoch=2), started(epoch=3)]), complete(epoch=3))
    assert carry_claim(claim, other_epoch) is None
    parked = JobParked(
        **ids,
        attempt=1,
        epoch=2,
        worker_id="w1",
        poll_count=1,
        callback_after=5,
        not_before=at(9),
        at=at(2),
    )
    assert carry_claim(claim, [parked]) is None
    assert carry_claim(claim, []) is None


def test_the_implied_start_is_the_claim_and_old_results_imply_none() -> None:
    claim = started()
    (success,) = carry_claim(claim, job.decide(after([queued(), claim]), complete())) or []
    assert isinstance(success, JobSucceeded)
    assert implied_start(success) == claim
    plain = job.decide(after([queued(), claim]), complete())[0]
    assert isinstance(plain, JobSucceeded) and implied_start(plain) is None
    assert list(with_implied_starts([queued(), success])) == [queued(), claim, success]


def test_a_carried_claim_survives_the_codec_and_an_old_result_still_decodes() -> None:
    claim = started()
    (success,) = carry_claim(claim, job.decide(after([queued(), claim]), complete())) or []
    assert decode(encode(success), subject=success.subject(), seq=9) == success
    plain = job.decide(after([queued(), claim]), complete())[0]
    assert b"claimed" not in encode(plain)  # nothing added to results that carry no claim
    decoded = decode(encode(plain), subject=plain.subject(), seq=9)
    assert isinstance(decoded, JobSucceeded) and decoded.claimed is None


def test_a_claim_decided_from_the_dispatch_alone_expects_the_dispatch_sequence() -> None:
    local = claim_locally(
        Dispatch(queued(prior_epoch=4)), worker_id="w9", delivery=1, dispatch_seq=41, lease_ttl=30
    )
    assert local is not None
    claim, state = local
    assert (claim.epoch, claim.worker_id, claim.dispatch_seq, claim.delivery) == (5, "w9", 41, 1)
    assert state.last_seq == 41  # what the claim, appended later or in the result, expects
    assert state.status == "running" and state.epoch == 5


def carried_run() -> list[Any]:
    """A simulated chain whose every result carries its claim, as a short run's would."""
    sim = Simulation(workflow_id="wf-carried")
    sim.start(_definition({"a": {}, "b": {"needs": ("a",)}}))
    sim.run()
    events = [record.event for record in sim.log]
    out: list[Any] = []
    for event in events:
        if isinstance(event, JobStarted):
            continue
        if isinstance(event, JobSucceeded | JobFailed) and event.worker_id is not None:
            claim = next(
                e
                for e in events
                if isinstance(e, JobStarted) and (e.job, e.epoch) == (event.job, event.epoch)
            )
            event = (carry_claim(claim, [event]) or [event])[0]
        out.append(event)
    return out


def test_the_chaos_checker_counts_carried_claims_as_executions() -> None:
    report = check_history(_renumber(carried_run()))
    assert report.violations == [], "\n".join(map(str, report.violations))
    assert report.executions == 2


def test_the_chaos_checker_catches_a_carried_claim_nothing_explains() -> None:
    events = carried_run()
    index = next(i for i, e in enumerate(events) if isinstance(e, JobSucceeded) and e.job == "a")
    success = events[index]
    assert isinstance(success, JobSucceeded) and success.claimed is not None
    # The same run's claim, appended alone before its result: the carried one is a second claim.
    events.insert(index, implied_start(success))
    report = check_history(_renumber(events))
    assert "executions explained" in {v.invariant for v in report.violations}


@pytest.mark.parametrize(
    ("window", "problem"),
    [(-1.0, "claim_window must be a number of seconds >= 0"), (15.0, "less than half")],
)
def test_a_claim_window_out_of_bounds_is_refused(window: float, problem: str) -> None:
    with pytest.raises(InvalidWorkerConfig, match=problem):
        WorkerConfig(claim_window=window, lease_ttl=30.0)
