"""Views that say what they wait for: queued jobs no live worker serves, jobs a timeout stopped."""

from __future__ import annotations

from actors import workflow
from events.catalog import (
    JobCancelled,
    JobQueued,
    JobSkipped,
    JobSpec,
    JobStarted,
    WorkflowFailed,
)
from projections.reader import WorkerInfo
from projections.views import WaitingFor, summary, workflow_view
from projections.waiting import (
    UnservedLabelSet,
    describe_waiting,
    live_capabilities,
    serving,
    summary_with_live_workers,
    with_live_workers,
)
from tests.unit.given_when_then import at
from tests.unit.test_workflow_actor import WF, dag, started


def queued(job: str, labels: tuple[str, ...] = (), uses: str | None = None) -> JobQueued:
    spec = JobSpec(run=None if uses else "x", uses=uses, labels=labels)
    return JobQueued(workflow_id=WF, job=job, attempt=1, spec=spec, queued_at=at(1))


def running(job: str) -> JobStarted:
    return JobStarted(
        workflow_id=WF, job=job, attempt=1, epoch=1, worker_id="w1", dispatch_seq=3,
        lease_ttl=30, started_at=at(2),
    )  # fmt: skip


TIMED_OUT = WorkflowFailed(
    workflow_id=WF, reason="timed out after 1m", timed_out=True, ended_at=at(60)
)


def test_a_timed_out_workflow_shows_its_unfinished_jobs_cancelled_with_the_reason() -> None:
    definition = dag(a={}, b={}, c={"needs": ("a",)}, timeout=60)
    state = workflow.replay([started(definition), queued("a"), running("a"), queued("b")])
    assert [job.status for job in workflow_view(state).jobs.values()] == [
        "running", "queued", "pending"
    ]  # fmt: skip
    # The end is stored first; the cancellations it causes follow (or the worker's own report).
    view = workflow_view(workflow.replay([TIMED_OUT], state))
    assert view.status == "failed"
    for name, job in view.jobs.items():
        assert (job.status, job.reason) == ("cancelled", "the workflow timed out after 1m"), name
        assert job.ended_at == at(60)
        assert job.waiting_for is None
    assert view.jobs["a"].worker_id == "w1"  # what ran is still said
    assert summary(view).job_counts["cancelled"] == 3


def test_a_job_that_ended_after_the_timeout_shows_how_it_ended() -> None:
    definition = dag(a={}, timeout=60)
    cancelled = JobCancelled(workflow_id=WF, job="a", reason="the workflow timed out after 1m",
                             worker_id="w1", at=at(61))  # fmt: skip
    state = workflow.replay([started(definition), queued("a"), running("a"), TIMED_OUT, cancelled])
    job = workflow_view(state).jobs["a"]
    assert (job.status, job.reason, job.ended_at) == (
        "cancelled", "the workflow timed out after 1m", at(61)
    )  # fmt: skip


def test_skipped_jobs_say_why() -> None:
    skipped = JobSkipped(workflow_id=WF, job="b", reason="needs a, which failed", at=at(3))
    state = workflow.replay([started(dag(a={}, b={"needs": ("a",)})), skipped])
    assert workflow_view(state).jobs["b"].reason == "needs a, which failed"


def test_a_queued_job_says_what_it_waits_for_and_how_many_live_workers_offer_it() -> None:
    state = workflow.replay(
        [started(dag(a={}, b={}, c={})), queued("a", ("linux", "gpu")), queued("b", uses="resize"),
         queued("c", ("linux",))]
    )  # fmt: skip
    view = workflow_view(state)
    assert view.jobs["a"].waiting_for == WaitingFor(labels=("gpu", "linux"))
    assert view.jobs["a"].waiting_for.live_workers is None  # not looked up: the stored view
    workers = [
        WorkerInfo(worker_id="w1", labels=("linux",)),
        WorkerInfo(worker_id="w2", labels=("linux", "gpu"), stale=True),  # counts as gone
        WorkerInfo(worker_id="w3", labels=("linux",), handlers=("resize",)),
    ]
    counted = with_live_workers(view, live_capabilities(workers))
    live = {name: job.waiting_for.live_workers for name, job in counted.jobs.items()
            if job.waiting_for}  # fmt: skip
    assert live == {"a": 0, "b": 1, "c": 2}
    assert describe_waiting(counted) == (
        "job a waits for a worker offering labels gpu, linux: no live worker does"
    )


def test_what_a_worker_must_offer_in_words() -> None:
    assert WaitingFor(labels=("gpu",)).describe() == "label gpu"
    assert WaitingFor(labels=("a", "b"), handler="h").describe() == "labels a, b and handler h"
    assert WaitingFor().describe() == "any worker"
    assert UnservedLabelSet.of(["@resize", "gpu"], token="@resize+gpu", waiting=2).describe() == (
        "label gpu and handler resize"
    )


def test_a_summary_lists_each_distinct_need_of_its_queued_jobs() -> None:
    state = workflow.replay(
        [started(dag(a={}, b={}, c={})), queued("a", ("gpu",)), queued("b", ("gpu",)),
         queued("c", uses="resize")]
    )  # fmt: skip
    row = summary(workflow_view(state))
    assert row.waiting_for == (WaitingFor(labels=("gpu",)), WaitingFor(handler="resize"))
    counted = summary_with_live_workers(row, live_capabilities([WorkerInfo(worker_id="w",
                                        labels=("gpu",))]))  # fmt: skip
    assert [need.live_workers for need in counted.waiting_for] == [1, 0]
    assert serving(WaitingFor(), []) == 0
