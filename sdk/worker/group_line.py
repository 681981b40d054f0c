"""The line of a job concurrency group: who holds a slot, who waits, in order. Pure.

One value per group (KV ``jw_concurrency``, key ``<group>``, changed by compare-and-set by the
workers and gateways that are offered the group's jobs: ``sdk/worker/concurrency.py``). A member
is one attempt of a job, placed by ``seq``: the stream sequence of its ``JobQueued`` event, the
dispatch message every worker is offered, so every worker orders the line the same way.

Unlike a workflow group's queue (``actors/group_queue.py``, whose engine sends each grant to its
run) nobody can hand a slot to a waiting attempt: its dispatch message comes back to some worker
every ``RECHECK`` and that worker takes the slot if the attempt is far enough ahead in the line.
So a waiter's place is kept by being seen: ``seen`` is refreshed at each try, and a waiter not
seen for ``WAIT_STALE`` (its dispatch deleted with its workflow, or no worker of its label set
left to offer it) loses its place, which it gets back, by its ``seq``, if it comes back.

With ``cancel_in_progress`` the group keeps only its ``limit`` newest members (holders and
waiters by ``seq``), as a workflow group does: the older ones are *superseded* (to be cancelled)
and a superseded waiter leaves the line at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson
from pydantic import BaseModel, ConfigDict

from actors.job import JobState
from events.catalog import JobStatus

WAIT_STALE: Final = 10.0
"""Seconds a waiter keeps its place without being seen (its dispatch comes back every second)."""
REFRESH_AFTER: Final = 3.0
"""A waiter's ``seen`` is written again only once it is this old: a try that changes nothing
else writes nothing."""


class Holder(BaseModel):
    """One attempt in a group: holding a slot since ``since`` or waiting, last seen at ``seen``
    (epoch s), offered on ``worker_id``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    workflow_id: str
    job: str
    attempt: int
    worker_id: str
    since: float
    # When its attempt was queued (epoch s), and its ``JobQueued``'s stream sequence: its place.
    queued_at: float = 0.0
    seq: int = 0
    seen: float = 0.0

    def same_job(self, other: Holder) -> bool:
        return (self.workflow_id, self.job) == (other.workflow_id, other.job)

    def same_attempt(self, other: Holder) -> bool:
        return self.same_job(other) and self.attempt == other.attempt

    @property
    def place(self) -> tuple[int, float, str, str]:
        return (self.seq, self.queued_at, self.workflow_id, self.job)


class Line(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    holders: tuple[Holder, ...] = ()
    waiting: tuple[Holder, ...] = ()  # by place


def decode(value: bytes | None) -> Line:
    """The stored line; a bare list is the holders (the value before waiters were kept)."""
    if not value:
        return Line()
    data = orjson.loads(value)
    if isinstance(data, list):
        return Line(holders=tuple(Holder.model_validate(item) for item in data))
    return Line.model_validate(data)


def encode(line: Line) -> bytes:
    return line.model_dump_json().encode()


@dataclass(frozen=True)
class Outcome:
    line: Line
    entered: bool
    superseded: tuple[Holder, ...] = ()


def enter(
    line: Line, newcomer: Holder, *, limit: int, cancel_in_progress: bool, now: float
) -> Outcome:
    """``newcomer`` is offered: it takes a slot when it holds one already (the same job: a claim
    again after a lost lease) or when it is among the first waiters the free slots are for; else
    it waits in its place. Waiters not seen for ``WAIT_STALE`` are dropped first."""
    if any(held.same_job(newcomer) for held in line.holders):
        holders = tuple(h for h in line.holders if not h.same_job(newcomer))
        waiting = tuple(w for w in line.waiting if not w.same_job(newcomer))
        held = newcomer.model_copy(update={"since": now, "seen": now})
        return Outcome(Line(holders=(*holders, held), waiting=waiting), entered=True)
    waiting = _in_place(_fresh(line.waiting, now), newcomer, now)
    superseded: tuple[Holder, ...] = ()
    if cancel_in_progress:
        members = sorted((*line.holders, *waiting), key=lambda m: m.place)
        superseded = tuple(members[:-limit])
        waiting = tuple(w for w in waiting if w not in superseded)
    free = limit - len(line.holders)
    ahead = [w for w in waiting[: max(free, 0)] if w.same_job(newcomer)]
    if not ahead:
        return Outcome(Line(holders=line.holders, waiting=waiting), False, superseded)
    held = newcomer.model_copy(update={"since": now, "seen": now})
    rest = tuple(w for w in waiting if not w.same_job(newcomer))
    return Outcome(Line(holders=(*line.holders, held), waiting=rest), True, superseded)


def leave(line: Line, holder: Holder) -> Line:
    """``holder``'s attempt leaves the group (holding or waiting): its result is recorded, its
    claim was refused, or it is stopped."""
    return Line(
        holders=tuple(h for h in line.holders if not h.same_attempt(holder)),
        waiting=tuple(w for w in line.waiting if not w.same_attempt(holder)),
    )


def without(line: Line, gone: list[Holder]) -> Line:
    """The line without holders that can no longer be running (found so in the log)."""
    return line.model_copy(update={"holders": tuple(h for h in line.holders if h not in gone)})


def _fresh(waiting: tuple[Holder, ...], now: float) -> tuple[Holder, ...]:
    return tuple(w for w in waiting if now - w.seen < WAIT_STALE)


def _in_place(waiting: tuple[Holder, ...], newcomer: Holder, now: float) -> tuple[Holder, ...]:
    """The line with ``newcomer`` in its place, seen now (its earlier place refreshed only when
    it is getting old, so that most tries write nothing)."""
    known = next((w for w in waiting if w.same_attempt(newcomer)), None)
    if known is not None and now - known.seen < REFRESH_AFTER:
        return waiting
    others = [w for w in waiting if not w.same_job(newcomer)]
    since = known.since if known is not None else now
    placed = newcomer.model_copy(update={"since": since, "seen": now})
    return tuple(sorted([*others, placed], key=lambda m: m.place))


def runs_elsewhere(state: JobState | None, attempt: int) -> bool:
    """True when a refused claim found ``attempt`` running under another claim: a dispatch
    delivered to two workers at once entered the group twice as the same job (one slot, taken
    over), so the slot is the winner's now and the loser must not give it back (the limit
    would be exceeded while the winner runs); the winner gives it back with its result."""
    return state is not None and state.status is JobStatus.RUNNING and state.attempt == attempt
