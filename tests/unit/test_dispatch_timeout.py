"""``dispatch_timeout``: an attempt no worker claims in time fails its job (decided by the actors).

given(events) / when(command) / then(events), no I/O: the job actor decides the failure, the
workflow actor carries the timeout from the definition into ``JobQueued``, the engine's reaction
arms the timer from when the attempt became claimable.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from actors import workflow
from actors.commands import Advance, RequeueJob, TimeoutDispatch
from actors.definitions import parse_workflow
from actors.engine import reactions
from actors.engine.timers import DispatchTimeoutTimer
from actors.job import ClaimRefused
from events.base import RecordedEvent
from events.catalog import JobFailed, JobQueued, JobRetryScheduled, JobSpec, JobStatus
from events.definition import RetryPolicy
from events.errors import InvalidWorkflow
from sdk.builder import Workflow
from tests.unit.given_when_then import T0, at
from tests.unit.test_job_actor import JOB, claim, failed, ids, started
from tests.unit.test_workflow_actor import WF, WFA, dag, make_dag
from tests.unit.test_workflow_actor import started as workflow_started

GPU = JobSpec(run="train", labels=("gpu", "cuda"), uses=None)


def queued(attempt: int = 1, t: float = 0, spec: JobSpec = GPU, **kw: object) -> JobQueued:
    return JobQueued(
        **ids, attempt=attempt, spec=spec, queued_at=at(t), dispatch_timeout=30.0, **kw
    )  # type: ignore[arg-type]


def timeout(attempt: int = 1, t: float = 30) -> TimeoutDispatch:
    return TimeoutDispatch(**ids, attempt=attempt, now=at(t))


# --- the job actor --------------------------------------------------------------------------


def test_an_attempt_nobody_claimed_in_time_fails_the_job_for_good() -> None:
    why = "no worker offering labels cuda, gpu claimed it within 30s (dispatch_timeout)"
    state = (
        JOB.given(queued())
        .when(timeout())
        .then(
            JobFailed(
                **ids,
                attempt=1,
                epoch=0,
                error=why,
                retryable=False,
                timed_out=True,
                ended_at=at(30),
            )
        )
    )
    assert state.status is JobStatus.FAILED


def test_the_error_names_the_handler_a_uses_job_waits_for() -> None:
    spec = JobSpec(uses="resize", labels=("linux",))
    decided = JOB.given(queued(spec=spec)).when(timeout()).events()
    assert isinstance(decided[0], JobFailed)
    assert decided[0].error.startswith("no worker offering label linux and handler resize")
    plain = JOB.given(queued(spec=JobSpec(run="x"))).when(timeout()).events()
    assert isinstance(plain[0], JobFailed)
    assert plain[0].error == "no worker claimed it within 30s (dispatch_timeout)"


def test_a_claimed_attempt_is_not_failed_by_its_dispatch_timer() -> None:
    JOB.given(queued(), started()).when(timeout()).then_nothing()


def test_a_stale_timer_of_an_earlier_attempt_does_nothing() -> None:
    retry = RetryPolicy(max_attempts=3)
    JOB.given(
        queued(retry=retry),
        started(),
        failed(will_retry=True),
        JobRetryScheduled(**ids, attempt=2, delay=0, not_before=at(5)),
        queued(attempt=2, t=5, retry=retry),
    ).when(timeout(attempt=1)).then_nothing()


def test_a_retry_keeps_the_dispatch_timeout_and_can_time_out_in_its_turn() -> None:
    retry = RetryPolicy(max_attempts=2)
    history = [
        queued(retry=retry),
        started(),
        failed(will_retry=True),
        JobRetryScheduled(**ids, attempt=2, delay=0, not_before=at(5)),
    ]
    requeued = JOB.given(*history).when(RequeueJob(**ids, attempt=2, now=at(6))).events()
    assert [e.dispatch_timeout for e in requeued if isinstance(e, JobQueued)] == [30.0]
    decided = JOB.given(*history, *requeued).when(timeout(attempt=2, t=40)).events()
    assert [(e.attempt, e.epoch, e.retryable) for e in decided if isinstance(e, JobFailed)] == [
        (2, 1, False)
    ]


def test_a_claim_after_the_dispatch_timeout_is_refused() -> None:
    ended = JOB.given(queued()).when(timeout()).events()
    JOB.given(queued(), *ended).when(claim()).then_raises(ClaimRefused, match="already failed")


# --- the workflow actor: the definition's timeout reaches JobQueued -------------------------


def test_a_job_s_dispatch_timeout_beats_the_workflow_s() -> None:
    definition = make_dag({"a": {"dispatch_timeout": 10.0}, "b": {}}).model_copy(
        update={"dispatch_timeout": 60.0}
    )
    decided = WFA.given(workflow_started(definition)).when(Advance(workflow_id=WF, now=T0)).events()
    timeouts = {e.job: e.dispatch_timeout for e in decided if isinstance(e, JobQueued)}
    assert timeouts == {"a": 10.0, "b": 60.0}


def test_without_a_dispatch_timeout_a_job_waits_for_ever() -> None:
    decided = WFA.given(workflow_started(dag(a={}))).when(Advance(workflow_id=WF, now=T0)).events()
    assert [e.dispatch_timeout for e in decided if isinstance(e, JobQueued)] == [None]


# --- the engine's plan: the timer counts from when the attempt became claimable -------------


def plan_for(event: JobQueued) -> list[DispatchTimeoutTimer]:
    state = workflow.replay([workflow_started(dag(**{ids["job"]: {}}))])
    delivered = RecordedEvent(2, event.subject(), T0, event)
    timers = reactions.react(state, [delivered], now=T0).timers
    return [timer for timer in timers if isinstance(timer, DispatchTimeoutTimer)]


def test_the_dispatch_timer_is_armed_from_the_queueing() -> None:
    assert plan_for(queued(t=2)) == [
        DispatchTimeoutTimer(workflow_id=WF, job=ids["job"], attempt=1, due=at(32))
    ]


def test_a_delayed_job_s_dispatch_timer_counts_from_its_not_before() -> None:
    [timer] = plan_for(queued(t=2, not_before=at(100)))
    assert timer.due == at(130)


def test_no_dispatch_timeout_no_timer() -> None:
    event = JobQueued(**ids, attempt=1, spec=GPU, queued_at=T0)
    assert plan_for(event) == []


# --- definitions: YAML fields, builder, located errors --------------------------------------


def test_dispatch_timeout_is_read_at_both_levels_from_a_definition() -> None:
    definition = parse_workflow(
        {
            "name": "w",
            "dispatch_timeout": "10m",
            "jobs": {"a": {"run": "x", "dispatch_timeout": "30s"}},
        }
    )
    assert (definition.dispatch_timeout, definition.jobs["a"].dispatch_timeout) == (600.0, 30.0)


def test_the_builder_sets_dispatch_timeouts() -> None:
    wf = Workflow("w", dispatch_timeout=timedelta(minutes=5))
    wf.job("a", run="x", dispatch_timeout="45s")
    definition = wf.build()
    assert (definition.dispatch_timeout, definition.jobs["a"].dispatch_timeout) == (300.0, 45.0)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"dispatch_timeout": "soon"}, "dispatch_timeout: "),
        ({"dispatch_timeout": 0}, "dispatch_timeout: 0 must be longer than zero"),
        ({"jobs": {"a": {"run": "x", "dispatch_timeout": "-1s"}}}, "jobs.a.dispatch_timeout: "),
        ({"jobs": {"a": {"run": "x", "dispatch_timeout": "0s"}}}, "jobs.a.dispatch_timeout: "),
    ],
)
def test_a_bad_dispatch_timeout_is_a_located_problem(raw: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow({"name": "w", "jobs": {"a": {"run": "x"}}, **raw})
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems
