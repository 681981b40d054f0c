"""The engine's reaction plan: which dispatches carry the claim hint (``reactions.Dispatch``).

The hint lets a worker claim attempt 1 without reading the log; it must only be given when the
job actor's state is exactly the queued event folded onto nothing, at the sequence given.
"""

from __future__ import annotations

from actors import workflow
from actors.engine import reactions
from events.base import Event, RecordedEvent
from events.catalog import JobQueued, JobResultRejected, JobSpec
from tests.unit.given_when_then import T0, at
from tests.unit.test_workflow_actor import WF, dag, started


def queued(attempt: int = 1) -> JobQueued:
    return JobQueued(
        workflow_id=WF, job="a", attempt=attempt, spec=JobSpec(run="./a"), queued_at=T0
    )


def recorded(*events: Event) -> list[RecordedEvent]:
    return [
        RecordedEvent(seq=seq, subject=f"evt.{WF}.x", time=T0, event=event)
        for seq, event in enumerate(events, start=1)
    ]


def only_dispatch(history: list[RecordedEvent], event: JobQueued) -> reactions.Dispatch:
    plan = reactions.plan(workflow.replay(history), [event])
    assert len(plan.dispatches) == 1
    return plan.dispatches[0]


def test_a_first_attempt_queued_alone_is_dispatched_with_its_event_and_sequence() -> None:
    first = queued()
    dispatch = only_dispatch(recorded(started(dag(a={})), first), first)
    assert (dispatch.queued, dispatch.queued_seq) == (first, 2)


def test_a_retry_carries_no_hint() -> None:
    first, second = queued(1), queued(2)
    dispatch = only_dispatch(recorded(started(dag(a={})), first, second), second)
    assert (dispatch.attempt, dispatch.queued, dispatch.queued_seq) == (2, None, None)


def test_a_job_with_more_than_its_queued_event_carries_no_hint() -> None:
    first = queued()
    rejected = JobResultRejected(
        workflow_id=WF, job="a", attempt=1, epoch=7, outcome="succeeded", reason="stale", at=at(1)
    )
    dispatch = only_dispatch(recorded(started(dag(a={})), first, rejected), first)
    assert (dispatch.queued, dispatch.queued_seq) == (None, None)


def test_without_known_sequences_there_is_no_hint() -> None:
    first = queued()
    plan = reactions.plan(workflow.replay([started(dag(a={})), first]), [first])
    assert [(d.queued, d.queued_seq) for d in plan.dispatches] == [(None, None)]
