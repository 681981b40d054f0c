"""The queue of a workflow concurrency group: who holds a slot, who waits, in order. Pure.

One value per group (KV ``jw_concurrency``, key ``wf.<group>``, changed by compare-and-set by
the engines of its members: ``actors/engine/groups.py``). A member is one run of a workflow
(``run``: the operator retries before it). ``holders`` hold a slot (at most ``limit``); ``waiting``
wait in the order they entered, and slots go to the oldest waiter first. With
``cancel_in_progress`` the group keeps only its ``limit`` newest members: the older ones are
*superseded* (their engines are asked to cancel them) and never get a slot.

Every function returns a new queue and what the caller must tell others: which members were
given a slot (``granted``: their engines append ``WorkflowAdmitted``) and which are superseded.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class Member(BaseModel):
    """One run of a workflow in a group; ``since``: when it entered or got its slot (epoch s)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    workflow_id: str
    run: int = 0
    since: float = 0.0

    def same_run(self, other: Member) -> bool:
        return (self.workflow_id, self.run) == (other.workflow_id, other.run)


class GroupQueue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    limit: int = Field(default=1, ge=1)
    cancel_in_progress: bool = False
    holders: tuple[Member, ...] = ()
    waiting: tuple[Member, ...] = ()

    @property
    def members(self) -> tuple[Member, ...]:
        """Oldest first: the holders, then the waiters in order."""
        return self.holders + self.waiting

    def holds(self, member: Member) -> bool:
        return any(held.same_run(member) for held in self.holders)


@dataclass(frozen=True)
class Outcome:
    queue: GroupQueue
    granted: tuple[Member, ...] = ()
    superseded: tuple[Member, ...] = ()


def enter(queue: GroupQueue, member: Member, *, limit: int, cancel_in_progress: bool) -> Outcome:
    """``member`` joins the group (at the end of the line; where it is when it is in already).

    An earlier run of the same workflow still listed (its end not given back) is replaced: a
    workflow runs one run at a time. The newcomer's ``limit`` and ``cancel_in_progress`` become
    the group's (definitions naming one group normally agree)."""
    present = any(m.same_run(member) for m in queue.members)
    holders = tuple(m for m in queue.holders if m.workflow_id != member.workflow_id or present)
    waiting = tuple(m for m in queue.waiting if m.workflow_id != member.workflow_id or present)
    if not present:
        waiting = (*waiting, member)
    base = GroupQueue(
        limit=limit, cancel_in_progress=cancel_in_progress, holders=holders, waiting=waiting
    )
    granted_queue, granted = _grant(base, now=member.since)
    superseded = _superseded(granted_queue)
    return Outcome(granted_queue, granted, superseded)


def leave(queue: GroupQueue, workflow_id: str, run: int, *, now: float) -> Outcome:
    """Run ``run`` of ``workflow_id`` leaves (it ended), and any earlier run still listed; a
    later run (queued again by a retry) keeps its place. The slots freed go to the next waiters."""

    def stays(member: Member) -> bool:
        return member.workflow_id != workflow_id or member.run > run

    kept = GroupQueue(
        limit=queue.limit,
        cancel_in_progress=queue.cancel_in_progress,
        holders=tuple(m for m in queue.holders if stays(m)),
        waiting=tuple(m for m in queue.waiting if stays(m)),
    )
    granted_queue, granted = _grant(kept, now=now)
    return Outcome(granted_queue, granted)


def without(queue: GroupQueue, gone: set[tuple[str, int]], *, now: float) -> Outcome:
    """The queue without members that ended without leaving (found so in the log)."""
    kept = GroupQueue(
        limit=queue.limit,
        cancel_in_progress=queue.cancel_in_progress,
        holders=tuple(m for m in queue.holders if (m.workflow_id, m.run) not in gone),
        waiting=tuple(m for m in queue.waiting if (m.workflow_id, m.run) not in gone),
    )
    granted_queue, granted = _grant(kept, now=now)
    return Outcome(granted_queue, granted)


def _grant(queue: GroupQueue, *, now: float | None = None) -> tuple[GroupQueue, tuple[Member, ...]]:
    """Free slots to the oldest waiters that may have one. With ``cancel_in_progress`` only the
    ``limit`` newest members may: the older ones are superseded, and are to be cancelled."""
    eligible = _newest(queue) if queue.cancel_in_progress else None
    holders, waiting, granted = list(queue.holders), [], []
    for member in queue.waiting:
        may = eligible is None or any(member.same_run(m) for m in eligible)
        if len(holders) < queue.limit and may:
            held = member if now is None else member.model_copy(update={"since": now})
            holders.append(held)
            granted.append(held)
        else:
            waiting.append(member)
    changed = queue.model_copy(update={"holders": tuple(holders), "waiting": tuple(waiting)})
    return changed, tuple(granted)


def _newest(queue: GroupQueue) -> tuple[Member, ...]:
    return queue.members[-queue.limit :]


def _superseded(queue: GroupQueue) -> tuple[Member, ...]:
    if not queue.cancel_in_progress:
        return ()
    return queue.members[: -queue.limit] if len(queue.members) > queue.limit else ()
