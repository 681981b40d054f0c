"""An operator's control of a run (``actors.control``), as given(events) / when(command) / then.

Pause and resume, skip a job: what each records, what it refuses and why, and what the workflow's
``Advance`` makes of the result. Retry: ``test_control_retry.py``.
"""

from __future__ import annotations

from typing import Any

from actors import workflow
from actors.commands import (
    Advance,
    CancelWorkflow,
    PauseWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    SkipJob,
    TimeoutWorkflow,
)
from events.catalog import (
    JobFailed,
    JobQueued,
    JobRetryScheduled,
    JobSkipped,
    JobSpec,
    JobStarted,
    JobStatus,
    JobSucceeded,
    WorkflowCancelRequested,
    WorkflowFailed,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowRetried,
    WorkflowStatus,
    WorkflowSucceeded,
)
from events.errors import CommandRefused, WorkflowNotFound
from tests.unit.given_when_then import T0, at
from tests.unit.test_workflow_actor import WF, WFA, dag, kinds, started

CHAIN = dag(a={}, b={"needs": ("a",)}, c={"needs": ("b",)})
FORK = dag(a={}, b={}, c={"needs": ("a",)})


def queued(job: str, attempt: int = 1, prior_epoch: int = 0) -> JobQueued:
    return JobQueued(
        workflow_id=WF,
        job=job,
        attempt=attempt,
        spec=JobSpec(run=f"./{job}"),
        queued_at=T0,
        prior_epoch=prior_epoch,
    )


def running(job: str, attempt: int = 1, epoch: int = 1) -> JobStarted:
    return JobStarted(
        workflow_id=WF,
        job=job,
        attempt=attempt,
        epoch=epoch,
        worker_id="w",
        lease_ttl=30,
        started_at=at(1),
    )


def ok(job: str, epoch: int = 1, **outputs: str) -> JobSucceeded:
    return JobSucceeded(
        workflow_id=WF, job=job, attempt=1, epoch=epoch, outputs=outputs, ended_at=at(2)
    )


def failed(job: str, attempt: int = 1, epoch: int = 1, *, will_retry: bool = False) -> JobFailed:
    return JobFailed(
        workflow_id=WF,
        job=job,
        attempt=attempt,
        epoch=epoch,
        error="boom",
        will_retry=will_retry,
        ended_at=at(2),
    )


def pause(**kw: Any) -> PauseWorkflow:
    return PauseWorkflow(workflow_id=WF, by="ops", now=at(5), **kw)


def resume(**kw: Any) -> ResumeWorkflow:
    return ResumeWorkflow(workflow_id=WF, by="ops", now=at(9), **kw)


def skip(job: str, **kw: Any) -> SkipJob:
    return SkipJob(workflow_id=WF, job=job, by="ops", now=at(6), **kw)


def retry(**kw: Any) -> RetryWorkflow:
    return RetryWorkflow(workflow_id=WF, by="ops", now=at(20), **kw)


def advance(now: float = 10) -> Advance:
    return Advance(workflow_id=WF, now=at(now))


def paused_event(reason: str | None = None, request_id: str | None = None) -> WorkflowPaused:
    return WorkflowPaused(workflow_id=WF, by="ops", reason=reason, request_id=request_id, at=at(5))


# --- pause and resume -------------------------------------------------------------------------


def test_pausing_a_running_workflow_records_who_and_why() -> None:
    state = (
        WFA.given(started(CHAIN), queued("a"))
        .when(pause(reason="deploy freeze", request_id="r1"))
        .then(paused_event("deploy freeze", "r1"))
    )
    assert state.status is WorkflowStatus.PAUSED
    assert state.pause_note == "paused by ops: deploy freeze"


def test_a_paused_workflow_queues_nothing_when_a_job_succeeds() -> None:
    # a's result is recorded (the worker appended it); b stays pending.
    WFA.given(started(CHAIN), queued("a"), paused_event(), running("a"), ok("a")).when(
        advance()
    ).then_nothing()


def test_a_paused_workflow_does_not_end_even_when_every_job_has() -> None:
    WFA.given(started(dag(a={})), queued("a"), paused_event(), running("a"), ok("a")).when(
        advance()
    ).then_nothing()


def test_resuming_continues_exactly_where_it_stopped() -> None:
    given = WFA.given(started(CHAIN), queued("a"), paused_event(), running("a"), ok("a", out="1"))
    state = given.when(resume(reason="go")).then(
        WorkflowResumed(workflow_id=WF, by="ops", reason="go", at=at(9))
    )
    assert state.status is WorkflowStatus.RUNNING and state.pause_note is None
    decided = workflow.decide(state, advance())
    assert kinds(decided) == [("JobQueued", "b")]


def test_pausing_a_paused_workflow_changes_nothing() -> None:
    WFA.given(started(CHAIN), paused_event()).when(pause()).then_nothing()


def test_pausing_an_ended_workflow_is_refused() -> None:
    WFA.given(started(CHAIN), WorkflowSucceeded(workflow_id=WF, ended_at=at(3))).when(
        pause()
    ).then_raises(CommandRefused, r"cannot pause workflow 'wf-1': it has ended \(succeeded\)")


def test_pausing_a_workflow_being_cancelled_is_refused() -> None:
    cancel = WorkflowCancelRequested(workflow_id=WF, reason="stop", requested_at=at(1))
    WFA.given(started(CHAIN), queued("a"), cancel).when(pause()).then_raises(
        CommandRefused, "it is being cancelled"
    )


def test_pausing_an_unknown_workflow_is_not_found() -> None:
    WFA.given().when(pause()).then_raises(WorkflowNotFound)


def test_resuming_a_running_workflow_is_refused() -> None:
    WFA.given(started(CHAIN)).when(resume()).then_raises(
        CommandRefused, r"cannot resume workflow 'wf-1': it is not paused \(it is running\)"
    )


def test_a_redelivered_request_changes_nothing_instead_of_being_refused() -> None:
    resumed = WorkflowResumed(workflow_id=WF, by="ops", request_id="r2", at=at(9))
    WFA.given(started(CHAIN), paused_event(), resumed).when(resume(request_id="r2")).then_nothing()


def test_cancelling_a_paused_workflow_still_withdraws_its_jobs_and_ends_it() -> None:
    given = WFA.given(started(FORK), queued("a"), queued("b"), paused_event())
    state = given.when(CancelWorkflow(workflow_id=WF, now=at(6))).state_after()
    decided = workflow.decide(state, advance())
    assert kinds(decided) == [
        ("JobCancelled", "a"),
        ("JobCancelled", "b"),
        ("JobCancelled", "c"),
        ("WorkflowCancelled", "wf"),
    ]


def test_a_timeout_firing_while_paused_waits_for_the_resume() -> None:
    definition = dag(a={}, timeout=60)
    WFA.given(started(definition), queued("a"), paused_event()).when(
        TimeoutWorkflow(workflow_id=WF, now=at(61))
    ).then_nothing()


def test_a_timeout_timer_before_the_deadline_of_the_current_run_does_nothing() -> None:
    definition = dag(a={}, timeout=60)
    retried = WorkflowRetried(workflow_id=WF, by="ops", jobs=("a",), at=at(50))
    # The first run's timer (due at 60) fires during the retried run (due at 110).
    WFA.given(started(definition), queued("a"), failed("a"), retried).when(
        TimeoutWorkflow(workflow_id=WF, now=at(60))
    ).then_nothing()


# --- skip ---------------------------------------------------------------------------------------


def test_skipping_a_queued_job_lets_its_dependents_run_with_the_outputs_given() -> None:
    state = (
        WFA.given(started(CHAIN), queued("a"))
        .when(skip("a", outputs={"version": "1.2"}, reason="flaky"))
        .then(
            JobSkipped(
                workflow_id=WF,
                job="a",
                reason="skipped by ops: flaky",
                at=at(6),
                by="ops",
                outputs={"version": "1.2"},
            )
        )
    )
    [b] = workflow.decide(state, advance())
    assert isinstance(b, JobQueued) and b.job == "b"
    assert b.spec.upstream_outputs == {"a": {"version": "1.2"}}


def test_a_skipped_job_reads_as_a_success_in_conditions_and_templates() -> None:
    definition = dag(
        a={},
        b={"needs": ("a",), "run": "echo ${{ needs.a.result }} ${{ needs.a.outputs.v }}"},
    )
    state = WFA.given(started(definition), queued("a")).when(skip("a", outputs={"v": "7"}))
    [b] = workflow.decide(state.state_after(), advance())
    assert isinstance(b, JobQueued) and b.spec.run == "echo success 7"


def test_skipping_a_failed_job_of_a_paused_workflow_unblocks_it_on_resume() -> None:
    on_failure = dag(a={"on_failure": "continue"}, b={"needs": ("a",)})
    given = WFA.given(started(on_failure), queued("a"), paused_event(), running("a"), failed("a"))
    state = given.when(skip("a")).state_after()
    assert state.job("a").status is JobStatus.SKIPPED and state.job("a").succeeded
    state = workflow.evolve(state, WorkflowResumed(workflow_id=WF, by="ops", at=at(9)))
    assert kinds(workflow.decide(state, advance())) == [("JobQueued", "b")]


def test_skipping_a_job_waiting_for_its_retry_is_allowed() -> None:
    retrying = JobRetryScheduled(workflow_id=WF, job="a", attempt=2, delay=5, not_before=at(7))
    given = WFA.given(
        started(CHAIN), queued("a"), running("a"), failed("a", will_retry=True), retrying
    )
    assert kinds(given.when(skip("a")).events()) == [("JobSkipped", "a")]


def test_skipping_a_pending_job_decides_it_before_its_upstream_ends() -> None:
    state = WFA.given(started(CHAIN), queued("a")).when(skip("b")).state_after()
    assert state.job("b").status is JobStatus.SKIPPED
    # c waits for a (b is settled); a's success then queues c, not b.
    state = workflow.evolve(workflow.evolve(state, running("a")), ok("a"))
    assert kinds(workflow.decide(state, advance())) == [("JobQueued", "c")]


def test_skipping_a_succeeded_job_is_refused() -> None:
    WFA.given(started(CHAIN), queued("a"), running("a"), ok("a")).when(skip("a")).then_raises(
        CommandRefused,
        "job 'a' is succeeded; only a pending, queued, waiting or failed job can be skipped",
    )


def test_skipping_a_running_job_is_refused() -> None:
    WFA.given(started(CHAIN), queued("a"), running("a")).when(skip("a")).then_raises(
        CommandRefused, "job 'a' is running"
    )


def test_skipping_an_unknown_job_is_refused_naming_the_jobs() -> None:
    WFA.given(started(CHAIN)).when(skip("nope")).then_raises(
        CommandRefused, r"it has no job 'nope' \(its jobs: a, b, c\)"
    )


def test_skipping_a_job_of_an_ended_workflow_is_refused_pointing_at_retry() -> None:
    ended = WorkflowFailed(workflow_id=WF, reason="1 job(s) failed: a", ended_at=at(3))
    WFA.given(started(CHAIN), queued("a"), failed("a"), ended).when(skip("a")).then_raises(
        CommandRefused, "it has ended \\(failed\\); `jetwork retry` runs its failed jobs again"
    )


def test_skipping_a_job_an_operator_skipped_already_changes_nothing() -> None:
    skipped = JobSkipped(workflow_id=WF, job="a", reason="skipped by ops", at=at(6), by="ops")
    WFA.given(started(CHAIN), queued("a"), skipped).when(skip("a")).then_nothing()
