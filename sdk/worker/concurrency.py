"""Concurrency groups: at most ``limit`` attempts of a group run at once, across every worker.

A job's ``concurrency: {group: "deploy-${{ inputs.env }}", limit: 1}`` (GitHub Actions'
``concurrency``) is rendered into its spec. Before a claim, a worker (or the gateway, for an HTTP
worker) enters the attempt into the group's line: KV ``jw_concurrency``, key ``<group>``, whose
value lists the holders and the waiters (``sdk/worker/group_line.py``: its rules, pure), changed
by compare-and-set, so however many workers race a group never has more than ``limit`` holders.

Waiting attempts are served in order: the line is ordered by each attempt's ``JobQueued`` stream
sequence (the dispatch message's, the same on every worker), and an attempt takes a free slot
only when no waiter queued before it is owed that slot; otherwise it keeps its place and its
dispatch is released (``nak``) and offered again after ``RECHECK``. The slot is given back once
the attempt's result is recorded, the attempt is abandoned, or its claim refused.

Nothing dead keeps a slot or a place for ever. A holder that can no longer be running (its
worker was killed, its lease ran out) is found from the log when the group is full: a slot older
than ``STALE_AFTER`` whose job's newest event is not a running attempt's (``JobStarted``,
``JobCancelRequested``) is dropped. A job that holds a slot already (the same workflow and job,
a claim again after a lost lease) takes it over. A waiter's place lasts while its dispatch keeps
coming back: one not seen for ``group_line.WAIT_STALE`` (its workflow deleted, no worker left
for its label set) is dropped by the next try, and gets its place back if it returns.
The order holds among the attempts that have been offered: one queued a moment before another but
offered to a worker after it (another label set busy, a slower worker) can be overtaken when it
finds a free slot taken.

With ``cancel_in_progress`` the group keeps its ``limit`` newest members, holding or waiting
(GitHub Actions' ``cancel-in-progress``): the older ones are asked to stop, oldest first: the
worker appends ``JobCancelRequested`` (a running one; the reason names the newest member) or
``JobCancelled`` (a waiting one) to each one's job actor under CAS and pushes the cancel notice;
their workers stop them and record ``JobCancelled``, which gives the slot back, and the newest,
released meanwhile, takes it at its next try. A member is only ever cancelled for a newer one,
so two members cannot cancel each other in turn.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final, Literal

import structlog
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from actors import job
from actors.commands import CancelJob
from events import namespaces, subjects
from events.catalog import JobSpec
from events.errors import ConcurrencyConflict
from events.store import ActorRef, EventStore
from sdk.worker import group_line
from sdk.worker.group_line import Holder, Line
from sdk.worker.namespace_jobs import NamespaceJobQuotas

__all__ = ["RECHECK", "STALE_AFTER", "ConcurrencyGroups", "Entry", "Holder", "group_key"]

Entry = Literal["held", "waiting", "withdrawn"]

_log = structlog.get_logger("jetwork.worker")
RECHECK: Final = 1.0
STALE_AFTER: Final = 10.0
_TRIES: Final = 16
_RUNNING: Final = frozenset({"JobStarted", "JobCancelRequested"})


def group_key(spec: JobSpec) -> str | None:
    """The KV key of the job's group (None: it has none), in its namespace: two namespaces'
    groups of one name are two groups (``ns.<namespace>.<group>``: ``events.namespaces``)."""
    if spec.concurrency is None:
        return None
    return namespaces.key_prefix(spec.namespace) + spec.concurrency.group


class ConcurrencyGroups:
    """Takes and gives back slots of concurrency groups in KV ``jw_concurrency``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._slots: KeyValue | None = None
        self._store: EventStore | None = None
        self._notify: Callable[[str], Awaitable[None]] | None = None
        self.quotas = NamespaceJobQuotas()

    async def start(
        self,
        js: JetStreamContext,
        store: EventStore,
        notify: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """``notify``: publishes an empty core NATS message on a subject (the cancel notice of
        a job a ``cancel_in_progress`` newcomer supersedes; without it, its worker's next check
        of the job finds the request)."""
        self._slots = await js.key_value(subjects.KV_CONCURRENCY)
        self._store = store
        self._notify = notify
        await self.quotas.start(js)

    async def enter(self, spec: JobSpec, holder: Holder) -> Entry:
        """``held`` when ``holder`` has a slot of the job's group (or it has none); ``waiting``:
        it waits in its place in the group's line; ``withdrawn``: it was superseded
        (``cancel_in_progress``) and its job no longer waits for this attempt (its dispatch is
        done with)."""
        group, key = spec.concurrency, group_key(spec)
        if group is None or key is None:
            return "held"
        return await self._enter(key, group.group, group.limit, group.cancel_in_progress, holder)

    async def take(self, key: str, limit: int, holder: Holder) -> bool:
        """True when ``holder`` has a slot of the group at ``key`` (at most ``limit``; a
        namespace's running jobs): the same line, in queue order, without cancel_in_progress."""
        return await self._enter(key, key, limit, False, holder) == "held"

    async def _enter(
        self, key: str, name: str, limit: int, cancel_in_progress: bool, holder: Holder
    ) -> Entry:
        assert self._slots is not None, "start() the groups first"
        for _ in range(_TRIES):
            line, revision = await self._read(key)
            outcome = self._decide(line, holder, limit, cancel_in_progress)
            if not outcome.entered and len(outcome.line.holders) >= limit:
                gone = await self._stale(outcome.line.holders)
                if gone:
                    kept = group_line.without(line, gone)
                    outcome = self._decide(kept, holder, limit, cancel_in_progress)
            if outcome.line != line and not await self._write(key, outcome.line, revision):
                continue  # raced: read again and decide again
            if outcome.superseded:
                await self._supersede(outcome, name)
                if any(
                    s.same_attempt(holder) for s in outcome.superseded
                ) and await self._withdrawn(holder):
                    return "withdrawn"
            return "held" if outcome.entered else "waiting"
        return "waiting"  # lost every race: treated as full, tried again shortly

    async def leave(self, group: str, holder: Holder) -> None:
        """Give the slot (or the place) of ``holder``'s attempt back (nothing when it has none)."""
        if self._slots is None:
            return
        for _ in range(_TRIES):
            line, revision = await self._read(group)
            if not revision:
                return
            kept = group_line.leave(line, holder)
            if kept == line or await self._write(group, kept, revision):
                return
        _log.warning("could not give a concurrency slot back", group=group)

    def _decide(
        self, line: Line, holder: Holder, limit: int, cancel_in_progress: bool
    ) -> group_line.Outcome:
        return group_line.enter(
            line, holder, limit=limit, cancel_in_progress=cancel_in_progress, now=self._clock()
        )

    async def _read(self, group: str) -> tuple[Line, int]:
        assert self._slots is not None
        try:
            entry = await self._slots.get(group)
        except KeyNotFoundError:
            return Line(), 0
        return group_line.decode(entry.value), entry.revision or 0

    async def _write(self, group: str, line: Line, revision: int) -> bool:
        assert self._slots is not None
        with contextlib.suppress(KeyWrongLastSequenceError):
            if revision:
                await self._slots.update(group, group_line.encode(line), last=revision)
            else:
                await self._slots.create(group, group_line.encode(line))
            return True
        return False

    async def _stale(self, holders: tuple[Holder, ...]) -> list[Holder]:
        now = self._clock()
        gone = []
        for holder in holders:
            if now - holder.since >= STALE_AFTER and not await self._running(holder):
                _log.info("stale concurrency slot dropped", workflow_id=holder.workflow_id,
                          job=holder.job, attempt=holder.attempt)  # fmt: skip
                gone.append(holder)
        return gone

    async def _supersede(self, outcome: group_line.Outcome, group: str) -> None:
        """Ask the members the group keeps no room for to stop, oldest first."""
        members = sorted([*outcome.line.holders, *outcome.line.waiting], key=lambda m: m.place)
        newest = members[-1] if members else outcome.superseded[-1]
        reason = (
            f"superseded by {newest.workflow_id}/{newest.job} in concurrency group {group} "
            "(cancel_in_progress)"
        )
        for holder in outcome.superseded:
            try:
                await self._cancel(holder, reason)
            except Exception as exc:  # (tried again at the next try)
                _log.warning("could not cancel a superseded job", workflow_id=holder.workflow_id,
                             job=holder.job, error=repr(exc))  # fmt: skip

    async def _cancel(self, holder: Holder, reason: str) -> None:
        assert self._store is not None
        actor = ActorRef.job(holder.workflow_id, holder.job)
        history = await self._store.load(actor)
        if not history:
            return
        state = job.replay(history)
        if state.attempt != holder.attempt or state.cancel_requested:
            return  # another attempt by now, or asked to stop already
        command = CancelJob(workflow_id=holder.workflow_id, job=holder.job, reason=reason,
                            now=datetime.now(UTC))  # fmt: skip
        events = job.decide(state, command)
        if not events:
            return
        command_id = f"{holder.workflow_id}.{holder.job}.{holder.attempt}.superseded"
        with contextlib.suppress(ConcurrencyConflict):  # it moved on: looked at again next try
            await self._store.append(
                actor, events, expected_seq=state.last_seq, command_id=command_id
            )
            if self._notify is not None:
                await self._notify(subjects.cancel_notice(holder.workflow_id, holder.job))

    async def _withdrawn(self, holder: Holder) -> bool:
        assert self._store is not None
        history = await self._store.load(ActorRef.job(holder.workflow_id, holder.job))
        if not history:
            return True
        state = job.replay(history)
        return state.attempt != holder.attempt or state.status.is_terminal

    async def _running(self, holder: Holder) -> bool:
        assert self._store is not None
        last = await self._store.last_event(ActorRef.job(holder.workflow_id, holder.job))
        return last is not None and last.event.event_type in _RUNNING
