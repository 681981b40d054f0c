"""Parked fan-out instances (a handler's ``InProgress``, an ``http:`` step's ``poll:``) are still
active: they hold a place under ``max_parallel``, a stop (fail_fast, cancel) withdraws them, and
their result is gathered like any other's. Given / when / then on the workflow actor."""

from __future__ import annotations

from actors.commands import Advance, ParkJob, UnparkJob
from actors.definitions import load_workflow_text
from actors.fanout_state import ACTIVE
from events.base import Event
from events.catalog import (
    JobCancelled,
    JobFailed,
    JobFannedOut,
    JobParked,
    JobQueued,
    JobStarted,
    JobStatus,
    JobSucceeded,
    WorkflowCancelRequested,
    WorkflowStarted,
    WorkflowStatus,
)
from events.definition import WorkflowDefinition
from tests.unit.fanout_simulation import FanOutSimulation
from tests.unit.given_when_then import T0, at
from tests.unit.test_fanout import FOR_EACH, WF, WFA, _items, _succeeded


def _definition(options: str) -> WorkflowDefinition:
    return load_workflow_text(FOR_EACH.replace("run: echo ${{", f"{options}\n    run: echo ${{"))


def _fanned_out(definition: WorkflowDefinition, count: int) -> list[Event]:
    items = list(range(count))
    return [
        WorkflowStarted(workflow_id=WF, definition=definition, started_at=T0),
        *_succeeded("list", _items(*items)),
        JobFannedOut(workflow_id=WF, job="each", attempt=1, items=items, at=T0),
    ]


def _running(name: str) -> list[Event]:
    return [
        JobQueued(workflow_id=WF, job=name, attempt=1, spec={}, queued_at=T0),
        JobStarted(
            workflow_id=WF,
            job=name,
            attempt=1,
            epoch=1,
            worker_id="w1",
            delivery=1,
            dispatch_seq=1,
            lease_ttl=30,
            started_at=at(1),
        ),
    ]


def _parked(name: str) -> list[Event]:
    parked = JobParked(
        workflow_id=WF,
        job=name,
        attempt=1,
        epoch=1,
        worker_id="w1",
        poll_count=1,
        outputs={"step": "1"},
        callback_after=60,
        not_before=at(62),
        at=at(2),
    )
    return [*_running(name), parked]


def test_parked_is_an_active_status_of_the_tally() -> None:
    assert JobStatus.PARKED in ACTIVE


def test_given_a_parked_instance_at_max_parallel_when_advanced_then_no_other_is_queued() -> None:
    given = _fanned_out(_definition("max_parallel: 1"), 3) + _parked("each-0")
    state = WFA.given(*given).when(Advance(workflow_id=WF, now=at(3))).then_nothing()
    assert state.fanouts["each"].active == 1


def test_given_a_parked_instance_when_another_fails_then_fail_fast_withdraws_it() -> None:
    failed = JobFailed(
        workflow_id=WF, job="each-1", attempt=1, epoch=1, error="boom", retryable=False,
        ended_at=at(3),
    )  # fmt: skip
    given = _fanned_out(_definition("max_parallel: 2"), 3) + _parked("each-0")
    given += [*_running("each-1"), failed]
    WFA.given(*given).when(Advance(workflow_id=WF, now=at(4))).then(
        JobCancelled(
            workflow_id=WF, job="each-0", reason="fail_fast: another instance failed", at=at(4)
        )
    )


def test_given_a_parked_instance_when_the_workflow_is_cancelled_then_it_is_withdrawn() -> None:
    given = _fanned_out(_definition("max_parallel: 1"), 2) + _parked("each-0")
    given.append(WorkflowCancelRequested(workflow_id=WF, reason="stop", requested_at=at(4)))
    decided = WFA.given(*given).when(Advance(workflow_id=WF, now=at(5))).events()
    # The instance first: the fan-out ends once its instances have (a later Advance).
    assert [(e.job, type(e).__name__) for e in decided] == [
        ("each-0", "JobCancelled"),
        ("after", "JobCancelled"),
    ]


def _park(sim: FanOutSimulation, name: str, after: float = 30) -> None:
    current = sim.state.job(name)
    sim.job(name, ParkJob, epoch=current.epoch, worker_id=current.worker_id,
            callback_after=after, outputs={"step": "1"})  # fmt: skip


def test_a_parked_instance_runs_again_and_its_outputs_are_gathered_in_item_order() -> None:
    sim = FanOutSimulation()
    sim.start(_definition("max_parallel: 2"))
    sim.advance()
    sim.claim("list")
    sim.finish("list", _items("a", "b", "c"))
    sim.advance()
    sim.claim("each-0")
    _park(sim, "each-0")
    sim.advance()
    assert sim.status_of("each-2") == "pending"  # each-0 parked still holds its place
    sim.claim("each-1")
    sim.finish("each-1", {"v": "B"})
    sim.advance()
    assert sim.status_of("each-2") == "queued"
    sim.tick(30)
    sim.job("each-0", UnparkJob, attempt=1, poll_count=1)
    sim.claim("each-0")
    sim.finish("each-0", {"v": "A"})
    sim.run({"each-2": [{"v": "C"}]})
    assert sim.state.status is WorkflowStatus.SUCCEEDED
    assert sim.state.job("each").outputs == {"v": '["A","B","C"]'}


def test_the_callback_of_an_instance_withdrawn_by_fail_fast_queues_nothing() -> None:
    sim = FanOutSimulation()
    sim.start(_definition("max_parallel: 2"))
    sim.advance()
    sim.claim("list")
    sim.finish("list", _items(1, 2, 3))
    sim.advance()
    sim.claim("each-0")
    _park(sim, "each-0")
    sim.claim("each-1")
    sim.finish("each-1", "fatal")
    sim.run()
    assert sim.status_of("each-0") == "cancelled"
    assert sim.state.status is WorkflowStatus.FAILED
    ended = len(sim.log)
    assert sim.job("each-0", UnparkJob, attempt=1, poll_count=1) == []  # the timer fires late
    assert len(sim.log) == ended
    assert not any(isinstance(r.event, JobSucceeded) and r.event.job == "each-0" for r in sim.log)
