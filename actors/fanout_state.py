"""What the workflow actor knows of each fanned-out job: its items and its instances' tally.

A fanned-out job ``test`` runs as instances ``test-0``, ``test-1`` ... each a job actor of its
own (its own events, claims, lease and log), not listed in the definition. The tally is kept up
to date as instance events are folded — one status change in, one count out — so that deciding
what a fan-out does next never looks at every instance (10,000 of them must stay cheap).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, replace
from typing import Any

from actors.job import JobState
from events.catalog import JobEvent, JobFannedOut, JobSkipped, JobStatus

__all__ = [
    "ACTIVE",
    "FanOutState",
    "fold",
    "instance_name",
    "job_names",
    "next_instances",
    "parent_of",
]

ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING, JobStatus.WAITING})
"""The statuses the tally counts as ``active`` (a ``wait_for`` instance waits)."""
_ACTIVE = ACTIVE


@dataclass(frozen=True, slots=True)
class FanOutState:
    attempt: int  # the parent's attempt that fanned out (JobFannedOut.attempt)
    items: tuple[Any, ...]
    # Instances 0 .. created-1 have been queued (they start in order); one after them may have
    # been skipped by an operator already.
    created: int = 0
    active: int = 0  # queued, running or retrying
    ended: int = 0
    failed: int = 0

    @property
    def count(self) -> int:
        return len(self.items)


def instance_name(job_name: str, index: int) -> str:
    return f"{job_name}-{index}"


def parent_of(fanouts: Mapping[str, FanOutState], name: str) -> tuple[str, int] | None:
    """``("test", 3)`` for ``test-3`` when ``test`` fanned out into at least 4 instances."""
    head, _, tail = name.rpartition("-")
    fan = fanouts.get(head)
    if fan is None or not tail.isdigit():
        return None
    index = int(tail)
    return (head, index) if index < fan.count else None


def job_names(order: tuple[str, ...], fanouts: Mapping[str, FanOutState]) -> Iterator[str]:
    """Every job in topological order, each fanned-out job followed by its instances."""
    for name in order:
        yield name
        fan = fanouts.get(name)
        if fan is not None:
            yield from (instance_name(name, index) for index in range(fan.count))


def next_instances(
    name: str, fan: FanOutState, jobs: Mapping[str, JobState], room: int
) -> list[int]:
    """The next ``room`` instances of ``name`` to queue, in item order, passing over those an
    operator skipped before their turn (each is passed over once: queueing one after it moves
    ``created`` past it)."""
    found: list[int] = []
    index = fan.created
    while len(found) < room and index < fan.count:
        instance = jobs.get(instance_name(name, index))
        if instance is None or instance.status is JobStatus.PENDING:
            found.append(index)
        index += 1
    return found


def fold(
    fanouts: MutableMapping[str, FanOutState], before: JobState, after: JobState, event: JobEvent
) -> None:
    """Update the working copy ``fanouts`` for ``event``, which took its job actor's state from
    ``before`` to ``after``."""
    if isinstance(event, JobFannedOut):
        # (Fanned out again: its earlier instances were reopened just before, by events.)
        fanouts[event.job] = FanOutState(attempt=event.attempt, items=tuple(event.items))
        return
    old, new = before.status, after.status
    if old is new:
        return
    found = parent_of(fanouts, event.job)
    if found is None:
        return
    parent, index = found
    fan = fanouts[parent]
    # An operator may skip an instance before its turn: it ends without being started, and the
    # ones before it are still to be queued.
    started = not isinstance(event, JobSkipped)
    fanouts[parent] = replace(
        fan,
        created=max(fan.created, index + 1) if started else fan.created,
        active=fan.active + (new in _ACTIVE) - (old in _ACTIVE),
        ended=fan.ended + new.is_terminal - old.is_terminal,
        failed=fan.failed + (new is JobStatus.FAILED) - (old is JobStatus.FAILED),
    )
