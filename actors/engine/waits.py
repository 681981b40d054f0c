"""The engine's part in ``wait_for`` (``actors.signals``): the wait's durable timeout timer, and
the signals a decision pairs with waiting jobs. Pure, as ``reactions`` (which calls it)."""

from __future__ import annotations

from datetime import datetime

from actors import signals
from actors.engine.timers import WaitTimeoutTimer
from actors.workflow import WorkflowState
from events.base import Event
from events.catalog import JobStatus, JobWaiting

__all__ = ["fire", "plan", "resolve"]


def plan(state: WorkflowState, event: JobWaiting) -> WaitTimeoutTimer | None:
    """The timer of a wait that started, if it has a timeout and still waits."""
    current = state.job(event.job)
    if (
        event.deadline is None
        or current.status is not JobStatus.WAITING
        or current.attempt != event.attempt
    ):
        return None
    return WaitTimeoutTimer(
        workflow_id=state.workflow_id, job=event.job, attempt=event.attempt, due=event.deadline
    )


def fire(state: WorkflowState, timer: WaitTimeoutTimer, now: datetime) -> list[Event]:
    return signals.time_out(state, timer.job, timer.attempt, now)


def resolve(state: WorkflowState, now: datetime) -> list[Event]:
    return signals.resolve(state, now)
