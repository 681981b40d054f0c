"""Concurrency groups: at most ``limit`` attempts of a group run at once, across every worker.

A job's ``concurrency: {group: "deploy-${{ inputs.env }}", limit: 1}`` (GitHub Actions'
``concurrency``) is rendered into its spec. Before a claim, a worker (or the gateway, for an HTTP
worker) takes a slot of the group: KV ``jw_concurrency``, key ``<group>``, whose value lists the
holders, changed by compare-and-set, so however many workers race a group never has more than
``limit`` holders. A full group releases the dispatch (``nak``) and it is tried again after
``RECHECK``; the slot is given back once the attempt's result is recorded, the attempt is
abandoned, or its claim refused.

A holder that can no longer be running (its worker was killed, its lease ran out) is found from
the log when the group is full: a slot older than ``STALE_AFTER`` whose job's newest event is
not a running attempt's (``JobStarted``, ``JobCancelRequested``) is dropped. A job that holds a
slot already (the same workflow and job, a claim again after a lost lease) takes it over.
Waiting jobs are not served in order: whichever is offered first once a slot frees takes it.

With ``cancel_in_progress`` a newcomer that finds the group full asks the holders queued before
it to stop, oldest first, as many as it needs (GitHub Actions' ``cancel-in-progress``): it
appends ``JobCancelRequested`` (the reason names it) to each one's job actor under CAS and pushes
the cancel notice; their workers stop them and record ``JobCancelled``, which gives the slot
back, and the newcomer, released meanwhile, takes it at its next try. A holder queued after the
newcomer is never cancelled by it, so two newcomers cannot cancel each other in turn.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final

import orjson
import structlog
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict

from actors import job
from actors.commands import CancelJob
from events import subjects
from events.catalog import JobSpec
from events.errors import ConcurrencyConflict
from events.store import ActorRef, EventStore

_log = structlog.get_logger("jetwork.worker")
RECHECK: Final = 1.0
STALE_AFTER: Final = 10.0
_TRIES: Final = 16
_RUNNING: Final = frozenset({"JobStarted", "JobCancelRequested"})


class Holder(BaseModel):
    """One slot of a group: which attempt holds it, on which worker, since when (epoch s)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    workflow_id: str
    job: str
    attempt: int
    worker_id: str
    since: float
    # When its attempt was queued (epoch s): ``cancel_in_progress`` cancels the older ones.
    queued_at: float = 0.0

    def same_job(self, other: Holder) -> bool:
        return (self.workflow_id, self.job) == (other.workflow_id, other.job)

    def same_attempt(self, other: Holder) -> bool:
        return self.same_job(other) and self.attempt == other.attempt


def decode(value: bytes | None) -> list[Holder]:
    return [Holder.model_validate(item) for item in orjson.loads(value)] if value else []


def encode(holders: list[Holder]) -> bytes:
    return orjson.dumps([holder.model_dump() for holder in holders])


IsRunning = Callable[[Holder], Awaitable[bool]]


class ConcurrencyGroups:
    """Takes and gives back slots of concurrency groups in KV ``jw_concurrency``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._slots: KeyValue | None = None
        self._store: EventStore | None = None
        self._notify: Callable[[str], Awaitable[None]] | None = None

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

    async def enter(self, spec: JobSpec, holder: Holder) -> bool:
        """True when ``holder`` has a slot of the job's group (or it has none); False: full."""
        group = spec.concurrency
        if group is None:
            return True
        assert self._slots is not None, "start() the groups first"
        for _ in range(_TRIES):
            try:
                entry = await self._slots.get(group.group)
                holders, revision = decode(entry.value), entry.revision or 0
            except KeyNotFoundError:
                holders, revision = [], 0
            holders = [h for h in holders if not h.same_job(holder)]
            if len(holders) >= group.limit:
                holders = await self._without_stale(holders)
            if len(holders) >= group.limit:
                if group.cancel_in_progress:
                    await self._supersede(holders, holder, group.group, group.limit)
                return False
            if await self._write(group.group, [*holders, holder], revision):
                return True
        return False  # lost every race: treated as full, tried again shortly

    async def leave(self, group: str, holder: Holder) -> None:
        """Give the slot of ``holder``'s attempt back (nothing when it holds none)."""
        if self._slots is None:
            return
        for _ in range(_TRIES):
            try:
                entry = await self._slots.get(group)
            except KeyNotFoundError:
                return
            holders = decode(entry.value)
            kept = [h for h in holders if not h.same_attempt(holder)]
            if len(kept) == len(holders) or await self._write(group, kept, entry.revision or 0):
                return
        _log.warning("could not give a concurrency slot back", group=group)

    async def _write(self, group: str, holders: list[Holder], revision: int) -> bool:
        assert self._slots is not None
        with contextlib.suppress(KeyWrongLastSequenceError):
            if revision:
                await self._slots.update(group, encode(holders), last=revision)
            else:
                await self._slots.create(group, encode(holders))
            return True
        return False

    async def _without_stale(self, holders: list[Holder]) -> list[Holder]:
        now = self._clock()
        kept = []
        for holder in holders:
            if now - holder.since < STALE_AFTER or await self._running(holder):
                kept.append(holder)
            else:
                _log.info("stale concurrency slot dropped", workflow_id=holder.workflow_id,
                          job=holder.job, attempt=holder.attempt)  # fmt: skip
        return kept

    async def _supersede(
        self, holders: list[Holder], newcomer: Holder, group: str, limit: int
    ) -> None:
        """Ask the holders queued before ``newcomer`` to stop, oldest first, to make it room."""
        older = sorted((h for h in holders if h.queued_at < newcomer.queued_at),
                       key=lambda h: h.queued_at)  # fmt: skip
        reason = (
            f"superseded by {newcomer.workflow_id}/{newcomer.job} in concurrency group {group} "
            "(cancel_in_progress)"
        )
        for holder in older[: len(holders) - limit + 1]:
            try:
                await self._cancel(holder, reason)
            except Exception as exc:  # (tried again at the newcomer's next try)
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

    async def _running(self, holder: Holder) -> bool:
        assert self._store is not None
        last = await self._store.last_event(ActorRef.job(holder.workflow_id, holder.job))
        return last is not None and last.event.event_type in _RUNNING
