"""Grouping decided events into conditional appends, one per actor: what a host does next.

A decision may hold events of several actors (``Advance`` queues jobs and ends the workflow);
each actor's events must be appended under CAS on that actor's last stream sequence, which
``replay`` of recorded events tracks in the states.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from events import subjects
from events.base import Event
from events.catalog import JobEvent, WorkflowEvent

if TYPE_CHECKING:  # actors.workflow re-exports this module: no import at run time
    from actors.workflow import WorkflowState


@dataclass(frozen=True, slots=True)
class Append:
    """One CAS append: ``events`` of one actor, expected to follow ``expected_last_seq``."""

    actor_filter: str  # e.g. evt.<wf>.job.<job>.* (Nats-Expected-Last-Subject-Sequence-Subject)
    expected_last_seq: int
    events: tuple[WorkflowEvent | JobEvent, ...]


def plan_appends(state: WorkflowState, events: Iterable[Event]) -> list[Append]:
    """Group decided events per actor, in the order each actor first appears.

    Append them in that order and stop at the first conflict: reload, then decide again
    (Advance is idempotent, so what was appended before the conflict is not decided twice).
    ``decide`` puts the workflow's normal end after the job events it follows from, and a
    timeout's end before the cancellations it causes.
    """
    groups: dict[str, tuple[int, list[WorkflowEvent | JobEvent]]] = {}
    for event in events:
        if isinstance(event, JobEvent):
            key = subjects.job_actor_filter(event.workflow_id, event.job)
            last = state.job(event.job).last_seq
        elif isinstance(event, WorkflowEvent):
            key, last = subjects.workflow_actor_filter(event.workflow_id), state.last_seq
        else:
            raise TypeError(f"not a workflow or job event: {event.event_type}")
        groups.setdefault(key, (last, []))[1].append(event)
    return [Append(key, last, tuple(batch)) for key, (last, batch) in groups.items()]
